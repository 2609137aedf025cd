//! Tokenizers: Hugging Face `tokenizer.json` files, and the character BPE of the shipped
//! model (`models/glassllm-en/tokenizer.json`).
//!
//! [`Tokenizer::from_file`] tells them apart by the JSON: a Hugging Face file is an object
//! with a `model` (BPE, byte-level or not, WordPiece, Unigram, WordLevel), read by the
//! `tokenizers` crate (its pure-Rust regex engine, no training, no downloads). Encoding
//! applies the file's normalizer, pre-tokenizer, model and post-processor, so special
//! tokens the post-processor adds (LLaMA's `<s>`, BERT's `[CLS]` … `[SEP]`) are added, as
//! transformers' `tokenizer(text)` does; GPT-2's byte-level BPE adds none. Decoding skips
//! special tokens. Chat templates are not applied.
//!
//! The shipped model's character BPE follows the original (`glassllm` 0.1.0, `tokenizer.py`) exactly:
//!
//! - **Vocabulary.** Ids 0–3 are `<pad> <unk> <bos> <eos>`, then one id per `alphabet`
//!   entry, then one per `merges` entry (the token being the two parts joined).
//! - **Pre-tokenisation.** The text is taken in Unicode NFC, every `' '` becomes `▁`
//!   (U+2581; a `▁` already in the text is thus read as a space), and the text is cut into
//!   chunks that merges never cross: a single `\n`; or a run of `▁` (possibly empty)
//!   followed by a maximal run of characters that are neither `▁` nor `\n`; or a run of `▁`
//!   followed by `\n` or the end of the text.
//! - **Merging.** Each chunk starts as its characters. While some adjacent pair is a
//!   merge, the pair of lowest rank (index in `merges`) is chosen and every occurrence of it
//!   is merged in one left-to-right, non-overlapping pass.
//! - **Unknown characters.** A character outside the alphabet stays a symbol of its own
//!   and becomes `<unk>` (id 1); encoding does not fail on it.
//! - **No specials are added:** no `<bos>` in front, no `<eos>` at the end.
//! - **Decoding** joins the tokens, skips `<pad>`, `<bos>` and `<eos>`, writes `<unk>` as
//!   `⁇` and turns every `▁` into a space; so `decode(encode(s)) == s` for text made of
//!   alphabet characters and spaces.
//!
//! Text is normalised to Unicode NFC first, as the original does (`unicode-normalization`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use unicode_normalization::UnicodeNormalization;

/// The special tokens, ids 0–3 in this order.
const SPECIALS: [&str; 4] = ["<pad>", "<unk>", "<bos>", "<eos>"];
/// The special token that unknown characters become.
const UNK: &str = "<unk>";
/// What `<unk>` decodes to.
const UNK_TEXT: &str = "⁇";
/// The character that stands for a space inside tokens.
const SPACE: char = '▁';

/// Why a tokenizer could not be loaded, or a text or ids could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The tokenizer file could not be read.
    #[error("cannot read tokenizer file `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The tokenizer text is not JSON.
    #[error("{origin} is not valid JSON: {source}")]
    Json {
        /// Where the text came from (the file, or "tokenizer JSON").
        origin: String,
        /// The parser's error, with line and column.
        source: serde_json::Error,
    },
    /// The JSON does not have the expected shape: an object with `alphabet` (an array of
    /// one-character strings) and `merges` (an array of pairs of token strings).
    #[error("{origin}: {message}")]
    Format {
        /// Where the text came from (the file, or "tokenizer JSON").
        origin: String,
        /// What was found and what was expected.
        message: String,
    },
    /// A Hugging Face tokenizer failed on a text or ids.
    #[error("the tokenizer failed: {message}")]
    Encode {
        /// The `tokenizers` crate's message.
        message: String,
    },
    /// A token id is not below the vocabulary size.
    #[error("token id {id} is out of range: the vocabulary has {vocab_size} tokens")]
    IdOutOfRange {
        /// The id.
        id: u64,
        /// The vocabulary size.
        vocab_size: usize,
    },
}

/// A merge rule as the encoder uses it.
#[derive(Debug, Clone, Copy)]
struct Merge {
    /// Index in `merges`: lower merges first.
    rank: usize,
    /// The id of the joined token.
    merged: u64,
}

/// A symbol of a chunk during merging: a token id, or a character outside the vocabulary.
type Symbol = Option<u64>;

/// A tokenizer: a Hugging Face `tokenizer.json`, or the shipped model's character BPE.
#[derive(Clone)]
pub struct Tokenizer {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    /// The shipped model's character BPE.
    Char(CharBpe),
    /// A Hugging Face tokenizer.
    HuggingFace(Box<tokenizers::Tokenizer>),
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Char(_) => "character BPE",
            Kind::HuggingFace(_) => "Hugging Face",
        };
        f.debug_struct("Tokenizer")
            .field("kind", &kind)
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

/// `t` without the padding and truncation its file may ask for (a sentence-embedding
/// model's pads every text to 128 tokens): a plan has no attention mask, so pads would be
/// attended to as text, and a prompt beyond the plan's context is an error of the run,
/// never cut silently.
fn unpadded(mut t: tokenizers::Tokenizer) -> tokenizers::Tokenizer {
    t.with_padding(None);
    // `with_truncation(None)` cannot fail: only a stride beyond the length is refused
    let _ = t.with_truncation(None);
    t
}

impl Tokenizer {
    /// Reads a tokenizer from a `tokenizer.json` file (see [`Tokenizer::from_json`]).
    pub fn from_file(path: &Path) -> Result<Tokenizer, TokenizerError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenizerError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, &format!("tokenizer file `{}`", path.display()))
    }

    /// Builds a tokenizer from the text of a `tokenizer.json`: a Hugging Face file (an
    /// object with `model`), or the shipped model's character BPE (an object with
    /// `alphabet` and `merges`, its rules are in the module documentation).
    pub fn from_json(text: &str) -> Result<Tokenizer, TokenizerError> {
        Self::parse(text, "tokenizer JSON")
    }

    fn parse(text: &str, origin: &str) -> Result<Tokenizer, TokenizerError> {
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|source| TokenizerError::Json {
                origin: origin.to_string(),
                source,
            })?;
        let kind = if json.get("model").is_some() {
            let format = |message: String| TokenizerError::Format {
                origin: origin.to_string(),
                message,
            };
            check_subword_prefix(&json).map_err(format)?;
            // the crate's reader is not ours to audit: a panic on a hostile file is an
            // error here (the fuzz tests found one, checked above)
            let read = std::panic::catch_unwind(|| tokenizers::Tokenizer::from_str(text));
            let hf = read
                .map_err(|_| format("the `tokenizers` crate failed on this file".into()))?
                .map_err(|e| {
                    format(format!(
                        "not a Hugging Face tokenizer the `tokenizers` crate reads: {e}"
                    ))
                })?;
            Kind::HuggingFace(Box::new(unpadded(hf)))
        } else {
            Kind::Char(CharBpe::parse(&json, origin)?)
        };
        Ok(Tokenizer { kind })
    }

    /// The number of token ids (for a Hugging Face tokenizer, with its added tokens).
    pub fn vocab_size(&self) -> usize {
        match &self.kind {
            Kind::Char(c) => c.vocab.len(),
            Kind::HuggingFace(t) => t.get_vocab_size(true),
        }
    }

    /// Encodes `text` into token ids (see the module documentation for each kind).
    ///
    /// # Errors
    /// A Hugging Face tokenizer that fails on the text.
    pub fn encode(&self, text: &str) -> Result<Vec<u64>, TokenizerError> {
        match &self.kind {
            Kind::Char(c) => Ok(c.encode(text)),
            Kind::HuggingFace(t) => {
                let encoding = t.encode(text, true).map_err(|e| TokenizerError::Encode {
                    message: e.to_string(),
                })?;
                Ok(encoding.get_ids().iter().map(|&i| u64::from(i)).collect())
            }
        }
    }

    /// Decodes token ids into text, skipping special tokens. Fails on an id not below
    /// [`Tokenizer::vocab_size`].
    pub fn decode(&self, ids: &[u64]) -> Result<String, TokenizerError> {
        let vocab_size = self.vocab_size();
        if let Some(&id) = ids.iter().find(|&&id| id >= vocab_size as u64) {
            return Err(TokenizerError::IdOutOfRange { id, vocab_size });
        }
        match &self.kind {
            Kind::Char(c) => Ok(c.decode(ids)),
            Kind::HuggingFace(t) => {
                let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
                t.decode(&ids, true).map_err(|e| TokenizerError::Encode {
                    message: e.to_string(),
                })
            }
        }
    }

    /// The id of the mask token of a masked-LM tokenizer (`[MASK]`, BERT's, or `<mask>`,
    /// RoBERTa's), if the vocabulary has one.
    pub fn mask_id(&self) -> Option<u64> {
        match &self.kind {
            Kind::Char(_) => None,
            Kind::HuggingFace(t) => ["[MASK]", "<mask>"]
                .iter()
                .find_map(|m| t.token_to_id(m))
                .map(u64::from),
        }
    }

    /// The character BPE, for tests.
    #[cfg(test)]
    fn char_bpe(&self) -> &CharBpe {
        match &self.kind {
            Kind::Char(c) => c,
            Kind::HuggingFace(_) => panic!("a Hugging Face tokenizer"),
        }
    }
}

/// The shipped model's character BPE: vocabulary, merge ranks, and the id of `<unk>`.
#[derive(Debug, Clone)]
struct CharBpe {
    /// Token strings by id (`▁` for spaces).
    vocab: Vec<String>,
    /// Id of each token string (the last id, when a string occurs twice, as in the original).
    ids: HashMap<String, u64>,
    /// Merge rules by the ids of their two parts.
    merges: HashMap<(u64, u64), Merge>,
    /// The id unknown characters become.
    unk: u64,
}

impl CharBpe {
    /// The character BPE from its JSON: an object with `alphabet`, an array of
    /// one-character strings, and `merges`, an array of `[left, right]` pairs of token
    /// strings (alphabet characters or earlier merges). Other keys (`version`) are ignored,
    /// as the original does. `origin` names the text in errors.
    fn parse(json: &serde_json::Value, origin: &str) -> Result<CharBpe, TokenizerError> {
        let format = |message: String| TokenizerError::Format {
            origin: origin.to_string(),
            message,
        };
        let Some(object) = json.as_object() else {
            return Err(format(format!(
                "expected a JSON object: a Hugging Face tokenizer (with `model`) or a \
                 character BPE (with `alphabet` and `merges`), found {}",
                kind(json)
            )));
        };
        let array = |key: &str, expected: &str| match object.get(key) {
            None => Err(format(format!("`{key}` is missing: expected {expected}"))),
            Some(serde_json::Value::Array(items)) => Ok(items),
            Some(other) => Err(format(format!(
                "`{key}` is {}: expected {expected}",
                kind(other)
            ))),
        };
        let alphabet = array("alphabet", "an array of one-character strings")?;
        let merges = array("merges", "an array of [left, right] pairs of token strings")?;

        let mut vocab: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
        for (i, entry) in alphabet.iter().enumerate() {
            match entry.as_str() {
                Some(s) if s.chars().count() == 1 => vocab.push(s.to_string()),
                _ => {
                    return Err(format(format!(
                        "`alphabet[{i}]` is {entry}: expected a string of one character"
                    )));
                }
            }
        }
        let mut pairs = Vec::with_capacity(merges.len());
        for (i, entry) in merges.iter().enumerate() {
            let pair = match entry.as_array().map(Vec::as_slice) {
                Some([left, right]) => left.as_str().zip(right.as_str()),
                _ => None,
            };
            let Some((left, right)) = pair else {
                return Err(format(format!(
                    "`merges[{i}]` is {entry}: expected a pair of strings [left, right]"
                )));
            };
            vocab.push(format!("{left}{right}"));
            pairs.push((i, left, right));
        }
        let mut ids = HashMap::with_capacity(vocab.len());
        for (id, token) in vocab.iter().enumerate() {
            ids.insert(token.clone(), id as u64);
        }
        let mut merge_rules = HashMap::with_capacity(pairs.len());
        for (rank, left, right) in pairs {
            let part = |s: &str| {
                ids.get(s)
                    .copied()
                    .filter(|&id| id >= SPECIALS.len() as u64)
                    .ok_or_else(|| {
                        format(format!(
                            "`merges[{rank}]` has part {s:?}, which is not a token: expected \
                             an alphabet character or the result of a merge"
                        ))
                    })
            };
            let key = (part(left)?, part(right)?);
            let merged = ids[&format!("{left}{right}")];
            // A pair listed twice keeps its last rank, as in the original.
            merge_rules.insert(key, Merge { rank, merged });
        }
        let unk = ids[UNK];
        Ok(CharBpe {
            vocab,
            ids,
            merges: merge_rules,
            unk,
        })
    }

    /// Encodes `text` (after NFC normalisation) into token ids, without `<bos>` or
    /// `<eos>`. Characters outside the alphabet become `<unk>`.
    fn encode(&self, text: &str) -> Vec<u64> {
        let chars: Vec<char> = text
            .nfc()
            .map(|c| if c == ' ' { SPACE } else { c })
            .collect();
        let mut out = Vec::with_capacity(chars.len());
        for chunk in chunks(&chars) {
            let symbols = self.merge_chunk(chunk);
            out.extend(symbols.into_iter().map(|s| s.unwrap_or(self.unk)));
        }
        out
    }

    /// Merges one chunk: repeatedly the adjacent pair of lowest rank, all its occurrences
    /// left to right.
    fn merge_chunk(&self, chunk: &[char]) -> Vec<Symbol> {
        let mut buf = [0u8; 4];
        let mut symbols: Vec<Symbol> = chunk
            .iter()
            .map(|c| self.ids.get(&*c.encode_utf8(&mut buf)).copied())
            .collect();
        let rule = |a: Symbol, b: Symbol| self.merges.get(&(a?, b?)).copied();
        while symbols.len() > 1 {
            let best = symbols
                .windows(2)
                .filter_map(|w| rule(w[0], w[1]).map(|m| (m.rank, (w[0], w[1]), m.merged)))
                .min_by_key(|&(rank, _, _)| rank);
            let Some((_, pair, merged)) = best else {
                break;
            };
            let mut next = Vec::with_capacity(symbols.len());
            let mut i = 0;
            while i < symbols.len() {
                if i + 1 < symbols.len() && (symbols[i], symbols[i + 1]) == pair {
                    next.push(Some(merged));
                    i += 2;
                } else {
                    next.push(symbols[i]);
                    i += 1;
                }
            }
            symbols = next;
        }
        symbols
    }

    /// Decodes token ids (each below the vocabulary size) into text: `<pad>`, `<bos>` and
    /// `<eos>` are skipped, `<unk>` is written `⁇`, and `▁` becomes a space.
    fn decode(&self, ids: &[u64]) -> String {
        let mut text = String::new();
        for &id in ids {
            let token = &self.vocab[id as usize];
            if token == UNK {
                text.push_str(UNK_TEXT);
            } else if !SPECIALS.contains(&token.as_str()) {
                text.push_str(token);
            }
        }
        text.replace(SPACE, " ")
    }
}

/// Cuts pre-tokenised characters (spaces already `▁`) into chunks, as the original's
/// pattern `\n|▁*[^▁\n]+|▁+` does.
fn chunks(chars: &[char]) -> Vec<&[char]> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < chars.len() {
        let run_end = |from: usize, pred: &dyn Fn(char) -> bool| {
            from + chars[from..].iter().take_while(|&&c| pred(c)).count()
        };
        let end = if chars[start] == '\n' {
            start + 1
        } else {
            let spaces_end = run_end(start, &|c| c == SPACE);
            run_end(spaces_end, &|c| c != SPACE && c != '\n')
        };
        out.push(&chars[start..end]);
        start = end;
    }
    out
}

/// A short description of a JSON value's kind, for errors.
fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;

/// A BPE model with a continuing-subword prefix merges a token with a continuation: the
/// second token of every merge must start with the prefix (the `tokenizers` crate slices
/// it off unchecked and panics otherwise).
fn check_subword_prefix(json: &serde_json::Value) -> Result<(), String> {
    let model = &json["model"];
    let Some(prefix) = model["continuing_subword_prefix"].as_str() else {
        return Ok(());
    };
    for merge in model["merges"].as_array().into_iter().flatten() {
        let second = match merge {
            serde_json::Value::String(m) => m.split_once(' ').map(|(_, b)| b),
            serde_json::Value::Array(pair) => pair.get(1).and_then(|b| b.as_str()),
            _ => None,
        };
        if let Some(b) = second
            && !b.starts_with(prefix)
        {
            return Err(format!(
                "merge {merge}: its second token does not start with the continuing-subword \
                 prefix {prefix:?}"
            ));
        }
    }
    Ok(())
}
