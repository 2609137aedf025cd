//! One party's material, re-derived from what its material file carries: its stream seed
//! (masks, party 0's product shares, its shuffle permutations), the common seed (`share`
//! seeds) and, in the body, what cannot be derived — party 1's product corrections, both
//! parties' DReLU keys and the permuting party's shuffle corrections (so party 0 reads
//! corrections too) — read in the order the dealer wrote them. Each protocol's material is re-derived by the
//! protocol's own `replay` function, which draws in the order its `deal` does.

use std::collections::HashMap;
use std::io::Read;

use comet_ir::NodeId;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use super::deal::Deal;
use super::{
    B2aMaterial, BitMuxMaterial, BitTripleMaterial, BlockMatMulMaterial, DreluMaterial,
    FixedCallMaterial, FixedMaskMaterial, GmwDreluMaterial, LutMaterial, MaterialError, Pair,
    PartySeed, Product, ShuffleMaterial, SquareMaterial, TripleMaterial,
};
use crate::protocols::material::PartyStreams;
use crate::protocols::shuffle;
use crate::protocols::shuffle::{check_rows, draw_permutation};
use crate::protocols::sign_select::{self, SignSelectMaterial};
use crate::protocols::trunc_fss::{self, TruncMaterial};
use crate::protocols::trunc_stochastic::{self, StochasticTruncMaterial};
use crate::protocols::{b2a, beaver_mul, bit_mux, block_matmul, drelu, fixed, fixed_mask, gmw};
use crate::protocols::{lut, square, xor};

/// Party `party`'s half of a dealer session, replayed from its seeds and a body of
/// materialised bytes.
pub struct PartyReplay {
    party: u8,
    /// A hash of the common seed, which both halves of a session share: the secret of the
    /// parties' channel key ([`crate::transport::ChannelKey::derive`]).
    channel_secret: [u8; 32],
    stream: ChaCha12Rng,
    common: ChaCha12Rng,
    body: Box<dyn Read + Send>,
    read: u64,
    headers: u64,
    fixed_shapes: HashMap<NodeId, Vec<usize>>,
    /// The owner of each one-sided fixed mask named so far.
    fixed_owners: HashMap<NodeId, crate::ring::PartyId>,
    /// This party's permutation of each shuffle named so far.
    perms: HashMap<u32, Vec<u32>>,
}

impl std::fmt::Debug for PartyReplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartyReplay")
            .field("party", &self.party)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

/// The secret the parties' channel key is derived from: a hash of the session's common
/// seed, which both halves of a session hold and nobody else does.
pub fn channel_secret_of(common: &PartySeed) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"comet channel secret v1\0");
    h.update(common);
    h.finalize().into()
}

impl PartyReplay {
    /// Replays party `party` from its stream seed, the common seed and `body`.
    pub fn new(
        party: u8,
        seed: PartySeed,
        common: PartySeed,
        body: Box<dyn Read + Send>,
    ) -> PartyReplay {
        let channel_secret = channel_secret_of(&common);
        PartyReplay {
            party,
            channel_secret,
            stream: ChaCha12Rng::from_seed(seed),
            common: ChaCha12Rng::from_seed(common),
            body,
            read: 0,
            headers: 0,
            fixed_shapes: HashMap::new(),
            fixed_owners: HashMap::new(),
            perms: HashMap::new(),
        }
    }

    /// Bytes read from the body so far, DReLU key headers included.
    pub fn body_bytes_read(&self) -> u64 {
        self.read
    }

    /// The secret both halves of this session share and nobody else but the dealer holds,
    /// from which the parties' channel key is derived ([`ChannelKey`]).
    ///
    /// [`ChannelKey`]: crate::transport::ChannelKey
    pub fn channel_secret(&self) -> [u8; 32] {
        self.channel_secret
    }

    /// The party replayed.
    pub fn party(&self) -> u8 {
        self.party
    }

    /// Whether the body has bytes left that no call used.
    ///
    /// # Errors
    /// If the body cannot be read.
    pub fn has_leftover(&mut self) -> Result<bool, MaterialError> {
        let mut b = [0u8; 1];
        let n = (self.body.read(&mut b)).map_err(|e| MaterialError::Corrupt(e.to_string()))?;
        Ok(n > 0)
    }

    fn mine<T>(&self, v: T) -> Pair<T> {
        let mut out = [None, None];
        out[usize::from(self.party)] = Some(v);
        out
    }

    /// This party's permutation named `perm`, drawn from its stream at the first use.
    fn permutation(&mut self, perm: u32, rows: usize) -> Vec<u32> {
        if let Some(pi) = self.perms.get(&perm) {
            return pi.clone();
        }
        let pi = draw_permutation(&mut self.stream, rows);
        self.perms.insert(perm, pi.clone());
        pi
    }

    /// The shape of fixed operand `w`, masked earlier.
    fn fixed_shape(&self, w: NodeId) -> Result<Vec<usize>, MaterialError> {
        (self.fixed_shapes.get(&w).cloned()).ok_or(MaterialError::NoFixedMask(w))
    }
}

impl PartyStreams for PartyReplay {
    fn party(&self) -> u8 {
        self.party
    }

    fn stream(&mut self) -> &mut ChaCha12Rng {
        &mut self.stream
    }

    fn party_seed(&self) -> PartySeed {
        self.stream.get_seed()
    }

    fn body_offset(&self) -> u64 {
        self.read
    }

    fn body(&mut self, n: usize) -> Result<Vec<u8>, MaterialError> {
        let mut buf = vec![0u8; n];
        let at = self.read;
        self.body.read_exact(&mut buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => MaterialError::Truncated { at },
            _ => MaterialError::Source {
                at,
                message: e.to_string(),
            },
        })?;
        self.read += n as u64;
        Ok(buf)
    }

    fn count_headers(&mut self, bytes: u64) {
        self.headers += bytes;
    }
}

impl Deal for PartyReplay {
    fn triple(
        &mut self,
        kind: Product,
        x: &[usize],
        y: &[usize],
    ) -> Result<Pair<TripleMaterial>, MaterialError> {
        let m = beaver_mul::replay(self, kind, x, y)?;
        Ok(self.mine(m))
    }

    fn cache_matmul(
        &mut self,
        op: crate::protocols::cache_matmul::CacheProduct,
        x: &[usize],
        c: &[usize],
        new: &[usize],
    ) -> Result<Pair<crate::protocols::cache_matmul::CacheMatMulMaterial>, MaterialError> {
        use crate::protocols::cache_matmul;
        let view = cache_matmul::view_shape(op, c)?;
        let out = Product::MatMul.shape(x, &view)?;
        let m = cache_matmul::replay(self, x, new, &out)?;
        Ok(self.mine(m))
    }

    fn square(&mut self, shape: &[usize]) -> Result<Pair<SquareMaterial>, MaterialError> {
        let m = square::replay(self, shape)?;
        Ok(self.mine(m))
    }

    fn fixed_mask(
        &mut self,
        w: NodeId,
        shape: &[usize],
        owner: Option<crate::ring::PartyId>,
    ) -> Result<Pair<FixedMaskMaterial>, MaterialError> {
        let m = fixed_mask::replay_mask(self, w, shape, owner);
        self.fixed_shapes.insert(w, shape.to_vec());
        if let Some(o) = owner {
            self.fixed_owners.insert(w, o);
        }
        Ok(self.mine(m))
    }

    fn fixed_call(
        &mut self,
        w: NodeId,
        kind: Product,
        x: &[usize],
    ) -> Result<Pair<FixedCallMaterial>, MaterialError> {
        let w_shape = self.fixed_shape(w)?;
        let owner = self.fixed_owners.get(&w).copied();
        let m = fixed::replay_call(self, kind, x, &w_shape, owner)?;
        Ok(self.mine(m))
    }

    fn drelu(&mut self, n: usize, bits: u32) -> Result<Pair<DreluMaterial>, MaterialError> {
        let m = drelu::replay(self, n, bits)?;
        Ok(self.mine(m))
    }

    fn lut(&mut self, n: usize, bits: u32) -> Result<Pair<LutMaterial>, MaterialError> {
        let m = lut::replay(self, n, bits)?;
        Ok(self.mine(m))
    }

    fn sign_select(
        &mut self,
        n: usize,
        bits: u32,
        same: bool,
    ) -> Result<Pair<SignSelectMaterial>, MaterialError> {
        let m = sign_select::replay(self, n, bits, same)?;
        Ok(self.mine(m))
    }

    fn faithful_trunc(
        &mut self,
        n: usize,
        bits: u32,
    ) -> Result<Pair<TruncMaterial>, MaterialError> {
        let m = trunc_fss::replay(self, n, bits)?;
        Ok(self.mine(m))
    }

    fn stochastic_trunc(
        &mut self,
        n: usize,
        bits: u32,
        width: u32,
    ) -> Result<Pair<StochasticTruncMaterial>, MaterialError> {
        let m = trunc_stochastic::replay(self, n, bits, width)?;
        Ok(self.mine(m))
    }

    fn bit_triples(
        &mut self,
        n: usize,
        lanes: u32,
    ) -> Result<Pair<BitTripleMaterial>, MaterialError> {
        let m = xor::replay(self, n, lanes)?;
        Ok(self.mine(m))
    }

    fn gmw_drelu(&mut self, n: usize) -> Result<Pair<GmwDreluMaterial>, MaterialError> {
        let m = gmw::replay(self, n)?;
        Ok(self.mine(m))
    }

    fn b2a(&mut self, n: usize) -> Result<Pair<B2aMaterial>, MaterialError> {
        let m = b2a::replay(self, n)?;
        Ok(self.mine(m))
    }

    fn bit_mux(
        &mut self,
        bit: &[usize],
        x: &[usize],
    ) -> Result<Pair<BitMuxMaterial>, MaterialError> {
        let m = bit_mux::replay(self, bit, x)?;
        Ok(self.mine(m))
    }

    fn shuffle(
        &mut self,
        perm: u32,
        rows: usize,
        k: usize,
    ) -> Result<Pair<ShuffleMaterial>, MaterialError> {
        check_rows(perm, rows, self.perms.get(&perm).map(Vec::len))?;
        let pi = self.permutation(perm, rows);
        let m = shuffle::replay(self, pi, k)?;
        Ok(self.mine(m))
    }

    fn block_matmul(
        &mut self,
        w: NodeId,
        seq: usize,
        block: usize,
    ) -> Result<Pair<BlockMatMulMaterial>, MaterialError> {
        let w_shape = self.fixed_shape(w)?;
        let m = block_matmul::replay(self, &w_shape, seq, block)?;
        Ok(self.mine(m))
    }

    fn share_seed(&mut self) -> [u8; 32] {
        let mut s = [0; 32];
        self.common.fill_bytes(&mut s);
        s
    }

    /// Bytes read from the body, less the DReLU key headers (as the dealer counts).
    fn offline_bytes(&self) -> u64 {
        self.read - self.headers
    }
}
