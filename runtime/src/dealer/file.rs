//! Material files: one party's half of a dealer session, written ahead of time by
//! `comet deal` and read by that party in a two-process run.
//!
//! Layout (integers little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `cometmat` |
//! | 4 | format version ([`MATERIAL_VERSION`]) |
//! | 1 | party (0 or 1) |
//! | 32 | plan digest ([`plan_digest`]) |
//! | 32 | session id (the same in both halves) |
//! | 32 | the party's stream seed |
//! | 32 | the common seed (`share` seeds) |
//! | 8 | body length |
//! | 32 | SHA-256 of the body |
//! | 4 | number of calls `n` |
//! | 16·n | per call: `seq`, `past` (u64 each) |
//! | … | body: the party's corrections (party 1's product corrections, the permuter's shuffle corrections), DReLU keys and lookup-table keys, in generation order |
//!
//! A file is checked whole (magic, version, party, plan, length, body hash) before any
//! communication, and marked used (a `.used` file beside it, created exclusively) before
//! its first call: material is never used twice.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use comet_ir::{DimEnv, Program};
use sha2::{Digest, Sha256};

use super::MaterialError;
use super::PartySeed;
use super::replay::PartyReplay;

/// The material format this release writes and reads. Version 2: fixed operands' masks
/// come from per-operand AES counter-mode keys ([`crate::protocols::fixed_mask`]), no
/// longer from the party's main stream. Version 3: a DReLU key batch's header carries the
/// comparison width m after the party byte ([`crate::fss::DreluKey::to_bytes`]). Version
/// 4: table lookups' keys, batch by batch ([`crate::protocols::lut`],
/// [`crate::fss::LutKey::to_bytes`]).
pub const MATERIAL_VERSION: u32 = 4;

const MAGIC: [u8; 8] = *b"cometmat";
/// Offset of the body length in the header.
const BODY_LEN_AT: u64 = 8 + 4 + 1 + 4 * 32;
/// Bytes of the header before the call list.
const FIXED_HEADER: usize = BODY_LEN_AT as usize + 8 + 32 + 4;

/// A SHA-256 digest of the plan's canonical JSON: both parties and the material must
/// agree on it.
///
/// # Panics
/// If the program cannot be written as a plan (it was read from one).
pub fn plan_digest(p: &Program) -> [u8; 32] {
    let json = comet_ir::plan::write_plan_json(p).expect("a loaded plan writes back");
    Sha256::digest(json.as_bytes()).into()
}

/// The header of a material file.
#[derive(Clone, PartialEq, Eq)]
pub struct MaterialHeader {
    /// The party the file is for.
    pub party: u8,
    /// The plan it was dealt for.
    pub plan_digest: [u8; 32],
    /// The dealer session (the same in both halves).
    pub session: [u8; 32],
    /// The calls it has material for, in order.
    pub calls: Vec<DimEnv>,
    seed: PartySeed,
    common: PartySeed,
    body_len: u64,
    body_sha256: [u8; 32],
}

impl std::fmt::Debug for MaterialHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaterialHeader")
            .field("party", &self.party)
            .field("session", &hex(&self.session[..8]))
            .field("calls", &self.calls.len())
            .field("body_len", &self.body_len)
            .finish_non_exhaustive()
    }
}

impl MaterialHeader {
    /// A header for party `party` (body length and hash filled in by [`seal`]).
    pub fn new(
        party: u8,
        plan_digest: [u8; 32],
        session: [u8; 32],
        calls: Vec<DimEnv>,
        seed: PartySeed,
        common: PartySeed,
    ) -> MaterialHeader {
        MaterialHeader {
            party,
            plan_digest,
            session,
            calls,
            seed,
            common,
            body_len: 0,
            body_sha256: [0; 32],
        }
    }

    /// The header's size in bytes.
    pub fn len(&self) -> usize {
        FIXED_HEADER + 16 * self.calls.len()
    }

    /// Whether the header lists no calls.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Bytes of the body.
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&MATERIAL_VERSION.to_le_bytes());
        out.push(self.party);
        for part in [&self.plan_digest, &self.session, &self.seed, &self.common] {
            out.extend_from_slice(part);
        }
        out.extend_from_slice(&self.body_len.to_le_bytes());
        out.extend_from_slice(&self.body_sha256);
        out.extend_from_slice(&(self.calls.len() as u32).to_le_bytes());
        for env in &self.calls {
            out.extend_from_slice(&env.seq.to_le_bytes());
            out.extend_from_slice(&env.past.to_le_bytes());
        }
        out
    }

    fn decode(r: &mut impl Read, path: &Path) -> Result<MaterialHeader, MaterialError> {
        let corrupt = |what: String| MaterialError::Corrupt(format!("{}: {what}", path.display()));
        let mut fixed = [0u8; FIXED_HEADER];
        r.read_exact(&mut fixed).map_err(|_| {
            corrupt("shorter than a material header: not a Comet material file".into())
        })?;
        if fixed[..8] != MAGIC {
            return Err(corrupt(
                "not a Comet material file (no `cometmat` magic); `comet deal` writes them".into(),
            ));
        }
        let version = u32::from_le_bytes(fixed[8..12].try_into().expect("4"));
        if version != MATERIAL_VERSION {
            return Err(corrupt(format!(
                "material format version {version}, this release reads {MATERIAL_VERSION}"
            )));
        }
        let party = fixed[12];
        if party > 1 {
            return Err(corrupt(format!("party byte {party}, not 0 or 1")));
        }
        let at = |i: usize| -> [u8; 32] { fixed[13 + 32 * i..45 + 32 * i].try_into().expect("32") };
        let b = BODY_LEN_AT as usize;
        let body_len = u64::from_le_bytes(fixed[b..b + 8].try_into().expect("8"));
        let body_sha256 = fixed[b + 8..b + 40].try_into().expect("32");
        let n = u32::from_le_bytes(fixed[b + 40..b + 44].try_into().expect("4"));
        if n > 1 << 20 {
            return Err(corrupt(format!("claims {n} calls")));
        }
        let mut calls = Vec::with_capacity(n as usize);
        for i in 0..n {
            let mut c = [0u8; 16];
            (r.read_exact(&mut c)).map_err(|_| corrupt(format!("truncated in call {i}")))?;
            calls.push(DimEnv {
                seq: u64::from_le_bytes(c[..8].try_into().expect("8")),
                past: u64::from_le_bytes(c[8..].try_into().expect("8")),
            });
        }
        Ok(MaterialHeader {
            party,
            plan_digest: at(0),
            session: at(1),
            seed: at(2),
            common: at(3),
            calls,
            body_len,
            body_sha256,
        })
    }
}

/// Creates `path` with `header` and returns a writer for the body; call [`seal`] on the
/// path once the body is written.
///
/// # Errors
/// If the file cannot be created or written.
pub fn create(path: &Path, header: &MaterialHeader) -> Result<BufWriter<File>, MaterialError> {
    let io = |e| MaterialError::io(path, e);
    let mut f = BufWriter::new(File::create(path).map_err(io)?);
    f.write_all(&header.encode()).map_err(io)?;
    Ok(f)
}

/// Fills in the body length and hash of a file made by [`create`] whose body is complete.
///
/// # Errors
/// If the file cannot be read back or rewritten.
pub fn seal(path: &Path) -> Result<u64, MaterialError> {
    let io = |e| MaterialError::io(path, e);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io)?;
    let header = MaterialHeader::decode(&mut BufReader::new(&mut f), path)?;
    let total = f.metadata().map_err(io)?.len();
    let body_len = total - header.len() as u64;
    f.seek(SeekFrom::Start(header.len() as u64)).map_err(io)?;
    let sha = hash_body(&mut f, body_len, path)?;
    f.seek(SeekFrom::Start(BODY_LEN_AT)).map_err(io)?;
    f.write_all(&body_len.to_le_bytes()).map_err(io)?;
    f.write_all(&sha).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(total)
}

fn hash_body(f: &mut File, len: u64, path: &Path) -> Result<[u8; 32], MaterialError> {
    let mut hasher = Sha256::new();
    let mut r = BufReader::with_capacity(1 << 20, Read::by_ref(f).take(len));
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf).map_err(|e| MaterialError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// The `.used` marker of a material file.
pub fn used_marker(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".used");
    PathBuf::from(s)
}

/// Opens party `party`'s material file for plan `digest`: checks it whole, marks it used,
/// and returns its header and the replay of its material.
///
/// # Errors
/// If the file is unreadable, not a material file, corrupt or truncated, for the other
/// party or another plan, or was used before.
pub fn open(
    path: &Path,
    party: u8,
    digest: &[u8; 32],
) -> Result<(MaterialHeader, PartyReplay), MaterialError> {
    let io = |e| MaterialError::io(path, e);
    let mut f = File::open(path).map_err(io)?;
    let header = MaterialHeader::decode(&mut BufReader::new(&mut f), path)?;
    let mismatch = |what: String| MaterialError::Mismatch(format!("{}: {what}", path.display()));
    if header.party != party {
        return Err(mismatch(format!(
            "this is party {}'s material, and this process runs party {party}: give each \
             party its own file (party{party}.mat)",
            header.party
        )));
    }
    if &header.plan_digest != digest {
        return Err(mismatch(format!(
            "dealt for plan {}, not for this plan ({}): deal material for this plan with \
             `comet deal`",
            hex(&header.plan_digest[..8]),
            hex(&digest[..8])
        )));
    }
    let total = f.metadata().map_err(io)?.len();
    let expected = header.len() as u64 + header.body_len;
    if total != expected {
        return Err(MaterialError::Corrupt(format!(
            "{}: {total} bytes, the header announces {expected}: the file is truncated or \
             has trailing bytes",
            path.display()
        )));
    }
    f.seek(SeekFrom::Start(header.len() as u64)).map_err(io)?;
    if hash_body(&mut f, header.body_len, path)? != header.body_sha256 {
        return Err(MaterialError::Corrupt(format!(
            "{}: the body's SHA-256 does not match its header: the file was altered",
            path.display()
        )));
    }
    mark_used(path)?;
    f.seek(SeekFrom::Start(header.len() as u64)).map_err(io)?;
    let body = Box::new(BufReader::with_capacity(1 << 20, f));
    let replay = PartyReplay::new(party, header.seed, header.common, body);
    Ok((header, replay))
}

fn mark_used(path: &Path) -> Result<(), MaterialError> {
    let marker = used_marker(path);
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&marker)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(MaterialError::Used {
            path: path.to_path_buf(),
            marker,
        }),
        Err(e) => Err(MaterialError::io(&marker, e)),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
