//! Tests of the tokenizer against the original's outputs.

use super::*;

const MODEL_TOKENIZER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../models/glassllm-en/tokenizer.json"
);
const REFERENCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/reference/glassllm-en-greedy.json"
);

fn model() -> Tokenizer {
    Tokenizer::from_file(Path::new(MODEL_TOKENIZER)).expect("the shipped tokenizer loads")
}

fn ids_of(value: &serde_json::Value) -> Vec<u64> {
    value
        .as_array()
        .expect("an array of ids")
        .iter()
        .map(|v| v.as_u64().expect("an id"))
        .collect()
}

#[test]
fn vocab_size_is_1024() {
    assert_eq!(model().vocab_size(), 1024);
}

#[test]
fn reference_cases_encode_and_decode_exactly() {
    let tok = model();
    let text = std::fs::read_to_string(REFERENCE).expect("the reference file is readable");
    let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = reference["cases"].as_array().expect("`cases`");
    assert!(!cases.is_empty());
    for case in cases {
        let prompt = case["prompt"].as_str().unwrap();
        assert_eq!(
            tok.encode(prompt).unwrap(),
            ids_of(&case["prompt_ids"]),
            "prompt {prompt:?}"
        );
        assert_eq!(
            tok.decode(&ids_of(&case["greedy_ids"])).unwrap(),
            case["greedy_text"].as_str().unwrap(),
            "greedy ids of {prompt:?}"
        );
    }
}

/// Texts and their ids as the original (`glassllm` 0.1.0) encodes them.
#[test]
fn matches_the_original_on_tricky_text() {
    let tok = model();
    let cases: &[(&str, &[u64])] = &[
        ("", &[]),
        (" ", &[91]),
        ("   ", &[91, 91, 91]),
        ("\n", &[4]),
        ("\n\n", &[4, 4]),
        ("Hello,  world!\n", &[34, 291, 761, 91, 343, 146, 5, 4]),
        (
            "  leading and trailing  ",
            &[91, 369, 170, 107, 120, 92, 341, 309, 107, 91, 91],
        ),
        ("a\n b\n\n  c", &[56, 4, 108, 4, 4, 91, 112]),
        ("tab\there", &[75, 319, 1, 732]),
        ("The ▁marker", &[185, 91, 109, 513, 105]),
        (
            "“Où?” she said — ‘yes’.",
            &[590, 85, 193, 168, 151, 91, 86, 567, 80, 124, 88, 13],
        ),
        (
            "Æsop’s fables: 1, 2, 3;",
            &[
                84, 74, 508, 243, 115, 319, 67, 124, 24, 91, 15, 11, 91, 16, 11, 91, 17, 25,
            ],
        ),
        ("café", &[58, 56, 61, 1]),
        ("naïve résumé", &[69, 56, 1, 164, 177, 1, 74, 273, 1]),
        ("x\r\ny", &[79, 1, 4, 80]),
        ("{[_]}*&", &[82, 53, 55, 54, 83, 10, 6]),
    ];
    for &(text, ids) in cases {
        assert_eq!(tok.encode(text).unwrap(), ids, "{text:?}");
    }
}

#[test]
fn round_trips() {
    let tok = model();
    for text in [
        "Once upon a time, there was a little dog.",
        "“Where are you going?” she asked.\n\n  He said nothing — not a word.",
        "Æsop’s fables: 1, 2, 3; [x] {y} (z) & *w*_!",
        "   spaces   everywhere   \n",
    ] {
        let ids = tok.encode(text).unwrap();
        assert!(ids.len() < text.chars().count(), "merges apply to {text:?}");
        assert_eq!(tok.decode(&ids).unwrap(), text);
    }
}

#[test]
fn lowest_rank_merges_first_and_left_to_right() {
    // Ids: a=4, b=5, aa=6, ba=7, aaa=8, ab=9. Outputs checked against the original.
    let tok = Tokenizer::from_json(
        r#"{"alphabet": ["a", "b"], "merges": [["a", "a"], ["b", "a"], ["aa", "a"], ["a", "b"]]}"#,
    )
    .unwrap();
    assert_eq!(tok.vocab_size(), 10);
    let cases: &[(&str, &[u64])] = &[
        ("aaa", &[8]),
        ("aaaa", &[6, 6]),
        ("aaaaa", &[6, 8]),
        ("baa", &[5, 6]),
        ("aab", &[6, 5]),
        ("abab", &[4, 7, 5]),
        ("aab b", &[6, 5, 1, 5]),
    ];
    for &(text, ids) in cases {
        assert_eq!(tok.encode(text).unwrap(), ids, "{text:?}");
    }
}

#[test]
fn unknown_characters_become_unk_and_decode_as_question_marks() {
    let tok = model();
    let ids = tok.encode("a€b").unwrap();
    assert_eq!(ids[1], 1);
    assert_eq!(tok.decode(&ids).unwrap(), "a⁇b");
}

#[test]
fn decode_skips_pad_bos_eos() {
    let tok = model();
    assert_eq!(tok.decode(&[0, 2, 5, 3, 1, 6]).unwrap(), "!⁇&");
}

#[test]
fn text_is_normalised_to_nfc_first() {
    let tok = model();
    // `e` + combining acute composes to `é` (outside the alphabet: one `<unk>`), as in the
    // original; without NFC it would be `e` followed by an `<unk>`.
    let composed = tok.encode("cafe\u{301} au lait").unwrap();
    assert_eq!(composed, tok.encode("caf\u{e9} au lait").unwrap());
    assert_ne!(composed, tok.encode("cafe au lait").unwrap());
    // The Kelvin sign, which NFC replaces by `K`.
    assert_eq!(
        tok.encode("1 \u{212A}").unwrap(),
        tok.encode("1 K").unwrap()
    );
}

#[test]
fn decode_rejects_ids_out_of_range() {
    let tok = model();
    let err = tok.decode(&[5, 1024]).unwrap_err();
    assert!(
        matches!(
            err,
            TokenizerError::IdOutOfRange {
                id: 1024,
                vocab_size: 1024
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("1024"));
    assert!(tok.decode(&[u64::MAX]).is_err());
    assert_eq!(
        tok.decode(&[1023]).unwrap(),
        tok.char_bpe().vocab[1023].replace('▁', " ")
    );
}

#[test]
fn unreadable_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-tokenizer.json");
    let err = Tokenizer::from_file(&path).unwrap_err();
    assert!(matches!(err, TokenizerError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("missing-tokenizer.json"), "{err}");
}

#[test]
fn malformed_json_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.json");
    std::fs::write(&path, r#"{"alphabet": ["a""#).unwrap();
    let err = Tokenizer::from_file(&path).unwrap_err();
    assert!(matches!(err, TokenizerError::Json { .. }), "{err:?}");
    assert!(err.to_string().contains("broken.json"), "{err}");
}

#[test]
fn wrong_shapes_say_what_was_expected() {
    let cases = [
        ("[]", "expected a JSON object"),
        (r#"{"merges": []}"#, "`alphabet` is missing"),
        (r#"{"alphabet": []}"#, "`merges` is missing"),
        (
            r#"{"alphabet": "ab", "merges": []}"#,
            "`alphabet` is a string",
        ),
        (
            r#"{"alphabet": ["a", "bc"], "merges": []}"#,
            "`alphabet[1]`",
        ),
        (r#"{"alphabet": ["a", 7], "merges": []}"#, "`alphabet[1]`"),
        (
            r#"{"alphabet": ["a"], "merges": [["a", "a"], ["a"]]}"#,
            "`merges[1]`",
        ),
        (
            r#"{"alphabet": ["a"], "merges": [["a", "b"]]}"#,
            "`merges[0]` has part \"b\"",
        ),
    ];
    for (json, expected) in cases {
        let err = Tokenizer::from_json(json).unwrap_err();
        assert!(
            matches!(err, TokenizerError::Format { .. }),
            "{json}: {err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(expected), "{json}: {message}");
    }
}

/// A byte-level BPE `tokenizer.json` of GPT-2's form: the 256 byte symbols (sorted), then
/// one token per merge, then `<|endoftext|>` as a special added token. Returns the JSON
/// and the vocabulary in id order.
fn byte_level(merges: &[(&str, &str)]) -> (String, Vec<String>) {
    let mut alphabet: Vec<char> = tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet()
        .into_iter()
        .collect();
    alphabet.sort();
    let mut vocab: Vec<String> = alphabet.iter().map(|c| c.to_string()).collect();
    vocab.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
    let entries: Vec<String> = (vocab.iter().enumerate())
        .map(|(i, t)| format!("{}: {i}", serde_json::Value::from(t.as_str())))
        .collect();
    let merges: Vec<String> = merges.iter().map(|(a, b)| format!("\"{a} {b}\"")).collect();
    let eot = vocab.len();
    vocab.push("<|endoftext|>".into());
    let json = format!(
        r#"{{"version": "1.0", "truncation": null, "padding": null,
  "added_tokens": [{{"id": {eot}, "content": "<|endoftext|>", "single_word": false,
    "lstrip": false, "rstrip": false, "normalized": false, "special": true}}],
  "normalizer": null,
  "pre_tokenizer": {{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}},
  "post_processor": {{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true}},
  "decoder": {{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}},
  "model": {{"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
    "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
    "vocab": {{{}}}, "merges": [{}]}}}}"#,
        entries.join(", "),
        merges.join(", ")
    );
    (json, vocab)
}

#[test]
fn hugging_face_byte_level_bpe_encodes_decodes_and_skips_specials() {
    let (json, vocab) = byte_level(&[("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("t", "he")]);
    let id = |t: &str| vocab.iter().position(|v| v == t).unwrap() as u64;
    let tok = Tokenizer::from_json(&json).unwrap();
    assert_eq!(tok.vocab_size(), 256 + 4 + 1);
    assert!(format!("{tok:?}").contains("Hugging Face"));
    // GPT-2's pre-tokenizer splits "the the" into "the" and " the" (space as Ġ); "Ġt" + "he"
    // ranks before "t" + "he", and "h e" first of all.
    assert_eq!(tok.encode(" the").unwrap(), [id("Ġthe")]);
    assert_eq!(tok.encode("the the").unwrap(), [id("the"), id("Ġthe")]);
    assert_eq!(tok.encode("hex").unwrap(), [id("he"), id("x")]);
    // Every byte has a symbol: any text round-trips.
    for text in ["the the", "Héllo, wörld! 😀\n\ttabs  and  spaces ", ""] {
        let ids = tok.encode(text).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), text, "{ids:?}");
    }
    // "é" is two bytes, two symbols.
    assert_eq!(tok.encode("é").unwrap().len(), 2);
    // Special tokens are skipped when decoding; ids past the vocabulary are errors.
    let eot = id("<|endoftext|>");
    assert_eq!(tok.decode(&[id("Ġthe"), eot]).unwrap(), " the");
    let err = tok.decode(&[id("he"), eot + 1]).unwrap_err();
    assert!(
        matches!(
            err,
            TokenizerError::IdOutOfRange {
                vocab_size: 261,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_malformed_hugging_face_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(
        &path,
        r#"{"model": {"type": "BPE", "vocab": 3, "merges": []}}"#,
    )
    .unwrap();
    let err = Tokenizer::from_file(&path).unwrap_err();
    assert!(matches!(err, TokenizerError::Format { .. }), "{err:?}");
    let m = err.to_string();
    assert!(m.contains("tokenizer.json"), "{m}");
    assert!(m.contains("not a Hugging Face tokenizer"), "{m}");
}

/// A file asking for padding to 8 and truncation at 4 (sentence-embedding models pad to
/// 128): the plan has no attention mask, so the prompt is encoded as written, neither
/// padded nor cut.
#[test]
fn hugging_face_padding_and_truncation_are_not_applied() {
    let (json, vocab) = byte_level(&[("h", "e")]);
    let json = json.replacen(
        r#""truncation": null, "padding": null"#,
        r#""truncation": {"direction": "Right", "max_length": 4, "strategy": "LongestFirst", "stride": 0},
  "padding": {"strategy": {"Fixed": 8}, "direction": "Right", "pad_to_multiple_of": null,
    "pad_id": 0, "pad_type_id": 0, "pad_token": "!"}"#,
        1,
    );
    assert!(json.contains("Fixed"), "the file asks for padding");
    let tok = Tokenizer::from_json(&json).unwrap();
    let he = vocab.iter().position(|v| v == "he").unwrap() as u64;
    assert_eq!(tok.encode("he").unwrap(), [he]);
    // he x he x he x: six tokens, beyond the file's 4
    assert_eq!(tok.encode("hexhexhex").unwrap().len(), 6);
}
