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
//! | 32 | session nonce (the same in both halves) |
//! | 32 | the party's stream seed |
//! | 32 | the common seed (`share` seeds) |
//! | 8 | body length |
//! | 4 | number of calls `n` |
//! | 16·n | per call: `seq`, `past` (u64 each) |
//! | … | body: the party's corrections (party 1's product corrections, the permuter's shuffle corrections), DReLU keys and lookup-table keys, in generation order |
//! | 32 | SHA-256 of every byte before it (header and body) |
//!
//! The session id is not stored: it is the SHA-256 of the nonce, the plan digest and the
//! call list ([`session_id`]), so the parties' handshake, which compares session ids,
//! also proves that both files list the same calls (a file whose calls were altered, its
//! digest recomputed, no longer pairs with its other half).
//!
//! A file is created with mode 0600 and never overwritten ([`create`]). It is checked whole
//! ([`open`]: magic, version, the lengths against the file's size, the SHA-256 of the whole
//! file before any header value is used, then party, plan and the call sizes) before any
//! communication, and marked used ([`Verified::mark_used`]) only after the handshake with
//! the peer, before its first call: in a per-user list keyed by session id and party
//! ([`UsedList`]), so that a copy or a renamed file is refused too; a `.used` file beside
//! it tells users. Material is never used twice.

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
/// [`crate::fss::LutKey::to_bytes`]). Version 5: the SHA-256 covers the whole file, header
/// included, as a trailer (it covered the body only, from the header).
pub const MATERIAL_VERSION: u32 = 5;

const MAGIC: [u8; 8] = *b"cometmat";
/// Offset of the body length in the header.
const BODY_LEN_AT: u64 = 8 + 4 + 1 + 4 * 32;
/// Bytes of the header before the call list.
const FIXED_HEADER: usize = BODY_LEN_AT as usize + 8 + 4;
/// Bytes of the trailer (the SHA-256 of the rest).
const TRAILER: u64 = 32;

/// The session id of a material file: the SHA-256 of a domain tag, the dealer's `nonce`,
/// the plan digest and the call list, so that the handshake binds both halves' calls.
pub fn session_id(nonce: &[u8; 32], plan_digest: &[u8; 32], calls: &[DimEnv]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"comet-material-session-v5");
    h.update(nonce);
    h.update(plan_digest);
    h.update((calls.len() as u64).to_le_bytes());
    for env in calls {
        h.update(env.seq.to_le_bytes());
        h.update(env.past.to_le_bytes());
    }
    h.finalize().into()
}

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
    /// The dealer session (the same in both halves): [`session_id`] of the nonce, the plan
    /// and the calls.
    pub session: [u8; 32],
    /// The calls it has material for, in order.
    pub calls: Vec<DimEnv>,
    nonce: [u8; 32],
    seed: PartySeed,
    common: PartySeed,
    body_len: u64,
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

/// The fixed part of a header, before the call list, as read (not yet authenticated).
struct Fixed {
    party: u8,
    keys: [[u8; 32]; 4],
    body_len: u64,
    calls: u32,
}

impl Fixed {
    /// Parses and checks magic and version (nothing else: the digest is not checked yet).
    fn parse(b: &[u8; FIXED_HEADER], path: &Path) -> Result<Fixed, MaterialError> {
        let corrupt = |what: String| MaterialError::Corrupt(format!("{}: {what}", path.display()));
        if b[..8] != MAGIC {
            return Err(corrupt(
                "not a Comet material file (no `cometmat` magic); `comet deal` writes them".into(),
            ));
        }
        let version = u32::from_le_bytes(b[8..12].try_into().expect("4"));
        if version != MATERIAL_VERSION {
            return Err(corrupt(format!(
                "material format version {version}, this release reads {MATERIAL_VERSION}: \
                 deal it again with this release's `comet deal`"
            )));
        }
        let at = |i: usize| -> [u8; 32] { b[13 + 32 * i..45 + 32 * i].try_into().expect("32") };
        let l = BODY_LEN_AT as usize;
        Ok(Fixed {
            party: b[12],
            keys: [at(0), at(1), at(2), at(3)],
            body_len: u64::from_le_bytes(b[l..l + 8].try_into().expect("8")),
            calls: u32::from_le_bytes(b[l + 8..l + 12].try_into().expect("4")),
        })
    }

    /// The file size this header announces, if it fits in a `u64`.
    fn file_len(&self) -> Option<u64> {
        (FIXED_HEADER as u64 + TRAILER)
            .checked_add(16 * u64::from(self.calls))?
            .checked_add(self.body_len)
    }
}

impl MaterialHeader {
    /// A header for party `party` of the session drawn as `nonce` (the same for both
    /// parties; the session id is derived, [`session_id`]); the body length is filled in by
    /// [`seal`].
    pub fn new(
        party: u8,
        plan_digest: [u8; 32],
        nonce: [u8; 32],
        calls: Vec<DimEnv>,
        seed: PartySeed,
        common: PartySeed,
    ) -> MaterialHeader {
        MaterialHeader {
            party,
            plan_digest,
            session: session_id(&nonce, &plan_digest, &calls),
            calls,
            nonce,
            seed,
            common,
            body_len: 0,
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
        for part in [&self.plan_digest, &self.nonce, &self.seed, &self.common] {
            out.extend_from_slice(part);
        }
        out.extend_from_slice(&self.body_len.to_le_bytes());
        out.extend_from_slice(&(self.calls.len() as u32).to_le_bytes());
        for env in &self.calls {
            out.extend_from_slice(&env.seq.to_le_bytes());
            out.extend_from_slice(&env.past.to_le_bytes());
        }
        out
    }
}

/// Creates `path` (mode 0600; an existing file is an error, never overwritten) with
/// `header` and returns a writer for the body; call [`seal`] on the path once the body is
/// written.
///
/// # Errors
/// If the file exists, or cannot be created or written.
pub fn create(path: &Path, header: &MaterialHeader) -> Result<BufWriter<File>, MaterialError> {
    let io = |e| MaterialError::io(path, e);
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let f = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            MaterialError::Exists(path.to_path_buf())
        } else {
            io(e)
        }
    })?;
    let mut f = BufWriter::new(f);
    f.write_all(&header.encode()).map_err(io)?;
    Ok(f)
}

/// Completes a file made by [`create`] whose body is written: fills in the body length
/// and appends the SHA-256 of the whole file. Returns the file's size.
///
/// # Errors
/// If the file cannot be read back or written.
pub fn seal(path: &Path) -> Result<u64, MaterialError> {
    let io = |e| MaterialError::io(path, e);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io)?;
    let mut b = [0u8; FIXED_HEADER];
    f.read_exact(&mut b).map_err(io)?;
    let fixed = Fixed::parse(&b, path)?;
    let header_len = FIXED_HEADER as u64 + 16 * u64::from(fixed.calls);
    let total = f.metadata().map_err(io)?.len();
    let body_len = total.checked_sub(header_len).ok_or_else(|| {
        MaterialError::Corrupt(format!("{}: shorter than its header", path.display()))
    })?;
    f.seek(SeekFrom::Start(BODY_LEN_AT)).map_err(io)?;
    f.write_all(&body_len.to_le_bytes()).map_err(io)?;
    f.seek(SeekFrom::Start(0)).map_err(io)?;
    let sha = hash_prefix(&mut f, total, path)?;
    f.seek(SeekFrom::End(0)).map_err(io)?;
    f.write_all(&sha).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(total + TRAILER)
}

/// The SHA-256 of the next `len` bytes of `f`, read in 1 MiB pieces.
fn hash_prefix(f: &mut File, len: u64, path: &Path) -> Result<[u8; 32], MaterialError> {
    let mut hasher = Sha256::new();
    let mut r = Read::by_ref(f).take(len);
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

/// The `.used` marker beside a material file (for users: the check is the [`UsedList`]).
pub fn used_marker(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".used");
    PathBuf::from(s)
}

/// The sessions used on this machine by this user: one entry per (session id, party),
/// created exclusively (two processes racing for one file cannot both win), in a
/// directory of mode 0700. Bound to the material's content, not its path: a copy or a
/// renamed file carries the same session id.
#[derive(Debug, Clone)]
pub struct UsedList {
    dir: PathBuf,
}

impl UsedList {
    /// The list in `dir` (created with mode 0700 if missing).
    ///
    /// # Errors
    /// If the directory cannot be created.
    pub fn at(dir: &Path) -> Result<UsedList, MaterialError> {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(dir).map_err(|e| MaterialError::io(dir, e))?;
        Ok(UsedList {
            dir: dir.to_path_buf(),
        })
    }

    /// The per-user list: `$COMET_STATE_DIR`, else `$XDG_STATE_HOME/comet`, else
    /// `~/.local/state/comet`, each with `used-material/` below it.
    ///
    /// # Errors
    /// If none of those is set, or the directory cannot be created.
    pub fn for_user() -> Result<UsedList, MaterialError> {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let state = var("COMET_STATE_DIR")
            .or_else(|| var("XDG_STATE_HOME").map(|d| d.join("comet")))
            .or_else(|| var("HOME").map(|h| h.join(".local/state/comet")))
            .ok_or_else(|| {
                MaterialError::Mismatch(
                    "no state directory for the list of used material: set COMET_STATE_DIR \
                     (or HOME)"
                        .into(),
                )
            })?;
        UsedList::at(&state.join("used-material"))
    }

    /// The entry of party `party`'s half of session `session`.
    pub fn entry(&self, session: &[u8; 32], party: u8) -> PathBuf {
        self.dir.join(format!("{}-party{party}", hex(session)))
    }

    /// Whether that half was used.
    pub fn is_used(&self, session: &[u8; 32], party: u8) -> bool {
        self.entry(session, party).exists()
    }

    /// Claims that half for `path`: an error if it was claimed before.
    fn claim(&self, session: &[u8; 32], party: u8, path: &Path) -> Result<(), MaterialError> {
        let entry = self.entry(session, party);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&entry) {
            Ok(mut f) => {
                // for users: which file it was (the entry's existence is the claim)
                let _ = writeln!(f, "{}", path.display());
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(MaterialError::Used {
                path: path.to_path_buf(),
                marker: entry,
            }),
            Err(e) => Err(MaterialError::io(&entry, e)),
        }
    }
}

/// A material file checked whole and found unused, not yet marked used: connect and
/// handshake with the peer, then [`Verified::mark_used`] to get its material.
pub struct Verified {
    header: MaterialHeader,
    file: File,
    path: PathBuf,
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verified")
            .field("path", &self.path)
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl Verified {
    /// The file's header (its session id is the handshake's).
    pub fn header(&self) -> &MaterialHeader {
        &self.header
    }

    /// The secret the parties' channel key is derived from (a hash of the file's common
    /// seed): available before the file is marked used, since the key is needed for the handshake.
    pub fn channel_secret(&self) -> [u8; 32] {
        super::replay::channel_secret_of(&self.header.common)
    }

    /// Marks the material used in `used` (and beside the file) and returns its header and
    /// the replay of its material. Call it after the handshake with the peer succeeded and
    /// before the first call.
    ///
    /// # Errors
    /// If another process claimed the session since [`open`], or the file cannot be read.
    pub fn mark_used(
        self,
        used: &UsedList,
    ) -> Result<(MaterialHeader, PartyReplay), MaterialError> {
        let Verified {
            header,
            mut file,
            path,
        } = self;
        used.claim(&header.session, header.party, &path)?;
        // best effort: the list above is the check
        let _ = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(used_marker(&path));
        file.seek(SeekFrom::Start(header.len() as u64))
            .map_err(|e| MaterialError::io(&path, e))?;
        let body = Box::new(BufReader::with_capacity(
            1 << 20,
            file.take(header.body_len),
        ));
        let replay = PartyReplay::new(header.party, header.seed, header.common, body);
        Ok((header, replay))
    }
}

/// Opens party `party`'s material file for plan `digest` and checks it whole: magic and
/// version, its size against the header's lengths, the SHA-256 of the whole file (before
/// any other header value is used), party, plan, the call sizes, and that `used` has no
/// entry for its session. Marks nothing: see [`Verified::mark_used`].
///
/// # Errors
/// If the file is unreadable, not a material file, corrupt, truncated or altered, for the
/// other party or another plan, or was used before.
pub fn open(
    path: &Path,
    party: u8,
    digest: &[u8; 32],
    used: &UsedList,
) -> Result<Verified, MaterialError> {
    let io = |e| MaterialError::io(path, e);
    let corrupt = |what: String| MaterialError::Corrupt(format!("{}: {what}", path.display()));
    let mut f = File::open(path).map_err(io)?;
    let total = f.metadata().map_err(io)?.len();
    let mut b = [0u8; FIXED_HEADER];
    if total < FIXED_HEADER as u64 + TRAILER || f.read_exact(&mut b).is_err() {
        if total >= 8 && f.seek(SeekFrom::Start(0)).is_ok() {
            let mut magic = [0u8; 8];
            if f.read_exact(&mut magic).is_ok() && magic != MAGIC {
                return Err(corrupt(
                    "not a Comet material file (no `cometmat` magic); `comet deal` writes them"
                        .into(),
                ));
            }
        }
        return Err(corrupt(
            "shorter than a material header: not a Comet material file".into(),
        ));
    }
    let fixed = Fixed::parse(&b, path)?;
    match fixed.file_len() {
        Some(expected) if expected == total => {}
        expected => {
            return Err(corrupt(format!(
                "{total} bytes, the header announces {}: the file is truncated or has \
                 trailing bytes",
                expected.map_or("more than 2^64".into(), |e| e.to_string())
            )));
        }
    }
    f.seek(SeekFrom::Start(0)).map_err(io)?;
    let sha = hash_prefix(&mut f, total - TRAILER, path)?;
    let mut trailer = [0u8; 32];
    f.read_exact(&mut trailer).map_err(io)?;
    if sha != trailer {
        return Err(corrupt(
            "the file's SHA-256 does not match its contents: the file was altered or damaged"
                .into(),
        ));
    }
    // authenticated from here on, and the call list's size is within the file's
    if fixed.party > 1 {
        return Err(corrupt(format!("party byte {}, not 0 or 1", fixed.party)));
    }
    f.seek(SeekFrom::Start(FIXED_HEADER as u64)).map_err(io)?;
    let mut list = vec![0u8; 16 * fixed.calls as usize];
    f.read_exact(&mut list).map_err(io)?;
    let calls: Vec<DimEnv> = list
        .chunks_exact(16)
        .map(|c| DimEnv {
            seq: u64::from_le_bytes(c[..8].try_into().expect("8")),
            past: u64::from_le_bytes(c[8..].try_into().expect("8")),
        })
        .collect();
    for (k, env) in calls.iter().enumerate() {
        if env.seq == 0
            || env
                .seq
                .checked_add(env.past)
                .is_none_or(|n| n > i64::MAX as u64)
        {
            return Err(corrupt(format!(
                "call {k} has seq {}, past {}: not the sizes of a call",
                env.seq, env.past
            )));
        }
    }
    let [plan, nonce, seed, common] = fixed.keys;
    let header = MaterialHeader {
        party: fixed.party,
        plan_digest: plan,
        session: session_id(&nonce, &plan, &calls),
        calls,
        nonce,
        seed,
        common,
        body_len: fixed.body_len,
    };
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
    if used.is_used(&header.session, party) {
        return Err(MaterialError::Used {
            path: path.to_path_buf(),
            marker: used.entry(&header.session, party),
        });
    }
    if used_marker(path).exists() {
        return Err(MaterialError::Used {
            path: path.to_path_buf(),
            marker: used_marker(path),
        });
    }
    Ok(Verified {
        header,
        file: f,
        path: path.to_path_buf(),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
