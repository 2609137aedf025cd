//! Material files of `tests/fuzz_corpus/mlp.plan`, either party (the first byte chooses):
//! opened, checked whole and marked used in a fresh used-list. Seeds: the files `comet
//! deal tests/fuzz_corpus/mlp.plan --prompt-len 2 --generate 1` writes, each prefixed with
//! its party byte.
#![no_main]

use comet_runtime::dealer::{UsedList, file, plan_digest};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const PLAN: &str = include_str!("../../tests/fuzz_corpus/mlp.plan");

fuzz_target!(|data: &[u8]| {
    static DIGEST: OnceLock<[u8; 32]> = OnceLock::new();
    let digest = DIGEST.get_or_init(|| {
        plan_digest(&comet_ir::plan::read_plan_json(PLAN).expect("the corpus plan"))
    });
    let Some((&p, bytes)) = data.split_first() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("comet-fuzz-material-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch folder");
    let path = dir.join("m.mat");
    std::fs::write(&path, bytes).expect("a scratch file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let private = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(&path, private).expect("0600");
    }
    let Ok(used) = UsedList::at(&dir.join("used")) else {
        return;
    };
    if let Ok(opened) = file::open(&path, p % 2, digest, &used) {
        let _ = opened.mark_used(&used);
    }
});
