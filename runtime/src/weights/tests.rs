//! Checkpoints written by hand: 8-byte little-endian header length, JSON header, data.

use super::*;
use comet_ir::Party;

/// One tensor of a hand-made file: name, dtype, shape, raw little-endian bytes.
type Entry<'a> = (&'a str, &'a str, Vec<usize>, Vec<u8>);

fn safetensors_bytes(entries: &[Entry]) -> Vec<u8> {
    let mut header = Vec::new();
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in entries {
        let (start, end) = (data.len(), data.len() + bytes.len());
        header.push(format!(
            "\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape:?},\"data_offsets\":[{start},{end}]}}"
        ));
        data.extend_from_slice(bytes);
    }
    let json = format!("{{{}}}", header.join(","));
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(&data);
    out
}

fn f32_bytes(xs: &[f64]) -> Vec<u8> {
    xs.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect()
}

fn info(name: &str, tensor: &str, shape: &[u64], transposed: bool) -> WeightInfo {
    WeightInfo {
        name: name.into(),
        tensor: tensor.into(),
        shape: shape.to_vec(),
        transposed,
        party: Party::Server,
    }
}

const VALUES: [f64; 6] = [1.5, -2.0, 0.25, 3.0, -0.5, 8.0];

#[test]
fn loads_every_float_dtype() {
    let f16: Vec<u8> = VALUES
        .iter()
        .flat_map(|&x| half::f16::from_f64(x).to_le_bytes())
        .collect();
    let bf16: Vec<u8> = VALUES
        .iter()
        .flat_map(|&x| half::bf16::from_f64(x).to_le_bytes())
        .collect();
    let f64s: Vec<u8> = VALUES.iter().flat_map(|x| x.to_le_bytes()).collect();
    let bytes = safetensors_bytes(&[
        ("a", "F32", vec![2, 3], f32_bytes(&VALUES)),
        ("b", "F16", vec![2, 3], f16),
        ("c", "BF16", vec![2, 3], bf16),
        ("d", "F64", vec![2, 3], f64s),
    ]);
    let infos: Vec<WeightInfo> = ["a", "b", "c", "d"]
        .iter()
        .map(|t| info(&format!("w.{t}"), t, &[2, 3], false))
        .collect();
    let w = from_bytes(&bytes, &infos).unwrap();
    for t in ["a", "b", "c", "d"] {
        let x = &w[&format!("w.{t}")];
        assert_eq!(x.shape(), &[2, 3], "{t}");
        assert_eq!(x.iter().copied().collect::<Vec<_>>(), VALUES, "{t}");
    }
}

#[test]
fn transposes_when_declared() {
    let bytes = safetensors_bytes(&[("lin.weight", "F32", vec![3, 2], f32_bytes(&VALUES))]);
    let w = from_bytes(&bytes, &[info("fc", "lin.weight", &[2, 3], true)]).unwrap();
    let x = &w["fc"];
    assert_eq!(x.shape(), &[2, 3]);
    // stored [[1.5, -2], [0.25, 3], [-0.5, 8]] read as its transpose
    assert_eq!(
        x.iter().copied().collect::<Vec<_>>(),
        [1.5, 0.25, -0.5, -2.0, 3.0, 8.0]
    );
}

fn message(bytes: &[u8], infos: &[WeightInfo]) -> String {
    from_bytes(bytes, infos).unwrap_err().to_string()
}

#[test]
fn missing_tensor_names_it_and_suggests_a_rename() {
    let bytes = safetensors_bytes(&[("model.E", "F32", vec![6], f32_bytes(&VALUES))]);
    let m = message(&bytes, &[info("E", "E", &[6], false)]);
    assert_eq!(
        m,
        "weight `E` needs tensor `E`, which the checkpoint does not have; it has `model.E`: \
         add `rename \"\" => \"model.\";` to the model"
    );
    let m = message(&bytes, &[info("wq", "blocks.0.wq", &[6], false)]);
    assert_eq!(
        m,
        "weight `wq` needs tensor `blocks.0.wq`, which the checkpoint does not have"
    );
}

#[test]
fn extra_prefix_in_the_model_is_suggested_away() {
    let bytes = safetensors_bytes(&[("h.0.w", "F32", vec![6], f32_bytes(&VALUES))]);
    let m = message(&bytes, &[info("w", "transformer.h.0.w", &[6], false)]);
    assert!(
        m.ends_with("it has `h.0.w`: add `rename \"transformer.\" => \"\";` to the model"),
        "{m}"
    );
}

#[test]
fn wrong_shape_names_both_shapes() {
    let bytes = safetensors_bytes(&[("t", "F32", vec![2, 3], f32_bytes(&VALUES))]);
    let m = message(&bytes, &[info("w", "t", &[6, 1], false)]);
    assert_eq!(
        m,
        "tensor `t` (weight `w`) has shape [2, 3] in the checkpoint, expected [6, 1]"
    );
    let m = message(&bytes, &[info("w", "t", &[2, 3], true)]);
    assert!(
        m.ends_with("expected [3, 2]; it looks transposed: declare the weight not `transposed`"),
        "{m}"
    );
}

#[test]
fn integer_dtype_is_refused() {
    let bytes = safetensors_bytes(&[("ids", "I32", vec![6], vec![0; 24])]);
    let m = message(&bytes, &[info("w", "ids", &[6], false)]);
    assert_eq!(
        m,
        "tensor `ids` (weight `w`) has dtype I32: only F32, F16, BF16 and F64 weights can be loaded"
    );
}

#[test]
fn corrupt_files_are_errors() {
    let good = safetensors_bytes(&[("t", "F32", vec![6], f32_bytes(&VALUES))]);
    let infos = [info("w", "t", &[6], false)];
    let truncated = &good[..good.len() - 3];
    let mut bad_json = good.clone();
    bad_json[8] = b'[';
    let huge_header = u64::MAX.to_le_bytes().to_vec();
    for bytes in [truncated, &bad_json, &huge_header, &[1, 2, 3][..], &[][..]] {
        let m = message(bytes, &infos);
        assert!(
            m.starts_with("the buffer is not a valid safetensors file: "),
            "{m}"
        );
    }
    let lying = safetensors_bytes(&[("t", "F32", vec![7], f32_bytes(&VALUES))]);
    assert!(message(&lying, &infos).contains("not a valid safetensors file"));
}

#[test]
fn reads_files_and_reports_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let bytes = safetensors_bytes(&[("t", "F32", vec![6], f32_bytes(&VALUES))]);
    std::fs::write(&path, bytes).unwrap();
    let w = load(&path, &[info("w", "t", &[6], false)]).unwrap();
    assert_eq!(w["w"].len(), 6);
    let gone = dir.path().join("nope.safetensors");
    let m = load(&gone, &[]).unwrap_err().to_string();
    assert!(
        m.starts_with(&format!("cannot read `{}`", gone.display())),
        "{m}"
    );
}

/// A sharded checkpoint in a folder: `a` (F32) and `b` (BF16) in shard 1, `c` (F16,
/// transposed) in shard 2, and an index listing them and `d` in a shard never written.
fn sharded() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let bf16: Vec<u8> = VALUES
        .iter()
        .flat_map(|&x| half::bf16::from_f64(x).to_le_bytes())
        .collect();
    let f16: Vec<u8> = VALUES
        .iter()
        .flat_map(|&x| half::f16::from_f64(x).to_le_bytes())
        .collect();
    let one = safetensors_bytes(&[
        ("a", "F32", vec![2, 3], f32_bytes(&VALUES)),
        ("b", "BF16", vec![6], bf16),
    ]);
    let two = safetensors_bytes(&[("c", "F16", vec![3, 2], f16)]);
    std::fs::write(dir.path().join("model-00001-of-00003.safetensors"), one).unwrap();
    std::fs::write(dir.path().join("model-00002-of-00003.safetensors"), two).unwrap();
    let index = r#"{"metadata": {"total_size": 36}, "weight_map": {
        "a": "model-00001-of-00003.safetensors", "b": "model-00001-of-00003.safetensors",
        "c": "model-00002-of-00003.safetensors", "d": "model-00003-of-00003.safetensors",
        "e": "model-00002-of-00003.safetensors"}}"#;
    std::fs::write(dir.path().join(INDEX_FILE), index).unwrap();
    dir
}

#[test]
fn sharded_checkpoints_load_through_their_index() {
    let dir = sharded();
    let infos = [
        info("wa", "a", &[2, 3], false),
        info("wb", "b", &[6], false),
        info("wc", "c", &[2, 3], true),
    ];
    // The folder and the index itself name the same checkpoint; the absent shard holds
    // no weight asked for, so it is never opened.
    for path in [dir.path().to_path_buf(), dir.path().join(INDEX_FILE)] {
        let c = Checkpoint::open(&path, &infos).unwrap();
        assert_eq!(c.shards(), 2);
        assert_eq!(
            c.load("wa").unwrap().iter().copied().collect::<Vec<_>>(),
            VALUES
        );
        assert_eq!(
            c.load("wb").unwrap().iter().copied().collect::<Vec<_>>(),
            VALUES
        );
        let wc = c.load("wc").unwrap();
        assert_eq!(wc.shape(), &[2, 3]);
        // Stored [3, 2] row-major, read transposed: element (i, j) is stored (j, i).
        assert_eq!(wc[[0, 1]], VALUES[2]);
        assert_eq!(wc[[1, 0]], VALUES[1]);
        let all = load(&path, &infos).unwrap();
        assert_eq!(all.len(), 3);
    }
}

#[test]
fn sharded_errors_name_the_shard_the_index_and_the_tensor() {
    let dir = sharded();
    let err = |infos: &[WeightInfo]| Checkpoint::open(dir.path(), infos).unwrap_err().to_string();
    let index = dir.path().join(INDEX_FILE);
    let m = err(&[info("wd", "d", &[6], false)]);
    assert_eq!(
        m,
        format!(
            "shard `{}` is missing: index `{}` places tensor `d` in it (download every shard \
             the index lists)",
            dir.path()
                .join("model-00003-of-00003.safetensors")
                .display(),
            index.display()
        )
    );
    let m = err(&[info("wz", "model.a", &[2, 3], false)]);
    assert!(
        m.starts_with(&format!(
            "weight `wz` needs tensor `model.a`, which the checkpoint does not have (index `{}`)",
            index.display()
        )),
        "{m}"
    );
    assert!(m.contains("add `rename \"model.\" => \"\";`"), "{m}");
    // Listed in a shard that does not hold it.
    let m = err(&[info("we", "e", &[6], false)]);
    assert!(m.contains("places it in shard"), "{m}");
    assert!(m.contains("which does not hold it"), "{m}");
    assert!(m.contains("model-00002-of-00003.safetensors"), "{m}");
    // The wrong shape, found in its shard.
    let m = err(&[info("wb", "b", &[3], false)]);
    assert!(m.contains("tensor `b` (weight `wb`) has shape [6]"), "{m}");

    std::fs::write(&index, r#"{"metadata": {}}"#).unwrap();
    let m = err(&[info("wa", "a", &[2, 3], false)]);
    assert!(m.contains("`weight_map` is missing"), "{m}");
    std::fs::write(&index, "{").unwrap();
    assert!(err(&[]).contains("not JSON"));
    std::fs::write(&index, r#"{"weight_map": {"a": "../x.safetensors"}}"#).unwrap();
    let m = err(&[info("wa", "a", &[2, 3], false)]);
    assert!(
        m.contains("expected a file name in the index's folder"),
        "{m}"
    );

    let empty = tempfile::tempdir().unwrap();
    let m = Checkpoint::open(empty.path(), &[]).unwrap_err().to_string();
    assert!(
        m.contains("holds no checkpoint: expected `model.safetensors.index.json`"),
        "{m}"
    );
    // A folder with a single file.
    let single = tempfile::tempdir().unwrap();
    std::fs::write(
        single.path().join(SINGLE_FILE),
        safetensors_bytes(&[("t", "F32", vec![6], f32_bytes(&VALUES))]),
    )
    .unwrap();
    let w = load(single.path(), &[info("w", "t", &[6], false)]).unwrap();
    assert_eq!(w["w"].len(), 6);
}
