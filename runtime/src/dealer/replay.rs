//! One party's material, re-derived from what its material file carries: its stream seed
//! (masks, party 0's product shares, its shuffle permutations), the common seed (`share`
//! seeds) and, in the body, what cannot be derived — party 1's product corrections, both
//! parties' DReLU keys and the permuting party's shuffle corrections (so party 0 reads
//! corrections too) — read in the order the dealer wrote them. Boolean material is drawn and read through the
//! same functions as the dealer's (`boolean`).

use std::collections::HashMap;
use std::io::Read;

use comet_ir::NodeId;
use ndarray::{ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use super::block::block_shapes;
use super::deal::{Deal, Pair, Product};
use super::shuffle::{check_rows, draw_permutation};
use super::{
    B2aMaterial, BitMuxMaterial, BitTripleMaterial, BlockMatMulMaterial, DreluMaterial,
    FixedCallMaterial, FixedMaskMaterial, GmwDreluMaterial, MaterialError, PartySeed,
    ShuffleMaterial, SquareMaterial, TripleMaterial, boolean,
};
use crate::fss::DreluKey;
use crate::fss::drelu::DRELU_KEY_HEADER_BYTES;

/// Party `party`'s half of a dealer session, replayed from its seeds and a body of
/// materialised bytes.
pub struct PartyReplay {
    party: u8,
    stream: ChaCha12Rng,
    common: ChaCha12Rng,
    body: Box<dyn Read + Send>,
    read: u64,
    headers: u64,
    fixed_shapes: HashMap<NodeId, Vec<usize>>,
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

impl PartyReplay {
    /// Replays party `party` from its stream seed, the common seed and `body`.
    pub fn new(
        party: u8,
        seed: PartySeed,
        common: PartySeed,
        body: Box<dyn Read + Send>,
    ) -> PartyReplay {
        PartyReplay {
            party,
            stream: ChaCha12Rng::from_seed(seed),
            common: ChaCha12Rng::from_seed(common),
            body,
            read: 0,
            headers: 0,
            fixed_shapes: HashMap::new(),
            perms: HashMap::new(),
        }
    }

    /// Bytes read from the body so far, DReLU key headers included.
    pub fn body_bytes_read(&self) -> u64 {
        self.read
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

    fn expand(&mut self, shape: &[usize]) -> ArrayD<u64> {
        ArrayD::from_shape_simple_fn(IxDyn(shape), || self.stream.next_u64())
    }

    fn bytes(&mut self, n: usize) -> Result<Vec<u8>, MaterialError> {
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

    /// This party's share of a product: party 0's comes from its stream, party 1's is the
    /// correction in the body.
    fn product_share(&mut self, shape: &[usize]) -> Result<ArrayD<u64>, MaterialError> {
        if self.party == 0 {
            return Ok(self.expand(shape));
        }
        self.correction(shape)
    }

    /// A correction of `shape` read from the body.
    fn correction(&mut self, shape: &[usize]) -> Result<ArrayD<u64>, MaterialError> {
        let n: usize = shape.iter().product();
        let bytes = self.bytes(8 * n)?;
        let values = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        Ok(ArrayD::from_shape_vec(IxDyn(shape), values).expect("sized"))
    }
}

impl Deal for PartyReplay {
    fn triple(
        &mut self,
        kind: Product,
        x: &[usize],
        y: &[usize],
    ) -> Result<Pair<TripleMaterial>, MaterialError> {
        let out = kind.shape(x, y)?;
        let (a, b) = (self.expand(x), self.expand(y));
        let c = self.product_share(&out)?;
        let party = self.party;
        Ok(self.mine(TripleMaterial { party, a, b, c }))
    }

    fn square(&mut self, shape: &[usize]) -> Result<Pair<SquareMaterial>, MaterialError> {
        let a = self.expand(shape);
        let c = self.product_share(shape)?;
        let party = self.party;
        Ok(self.mine(SquareMaterial { party, a, c }))
    }

    fn fixed_mask(
        &mut self,
        w: NodeId,
        shape: &[usize],
    ) -> Result<Pair<FixedMaskMaterial>, MaterialError> {
        let b = self.expand(shape);
        self.fixed_shapes.insert(w, shape.to_vec());
        let party = self.party;
        Ok(self.mine(FixedMaskMaterial { party, b }))
    }

    fn fixed_call(
        &mut self,
        w: NodeId,
        kind: Product,
        x: &[usize],
    ) -> Result<Pair<FixedCallMaterial>, MaterialError> {
        let w_shape = (self.fixed_shapes.get(&w)).ok_or(MaterialError::NoFixedMask(w))?;
        let out = kind.shape(x, w_shape)?;
        let a = self.expand(x);
        let c = self.product_share(&out)?;
        let party = self.party;
        Ok(self.mine(FixedCallMaterial { party, a, c }))
    }

    fn drelu(&mut self, n: usize) -> Result<Pair<DreluMaterial>, MaterialError> {
        let at = self.read;
        let mut bytes = self.bytes(DRELU_KEY_HEADER_BYTES)?;
        let count = u64::from_le_bytes(bytes[1..9].try_into().expect("8 bytes"));
        if bytes[0] != self.party || count != n as u64 {
            return Err(MaterialError::Corrupt(format!(
                "at body byte {at}: expected the DReLU keys of party {} for {n} gates, found \
                 party {} and {count} gates: the file does not follow the plan",
                self.party, bytes[0]
            )));
        }
        self.headers += DRELU_KEY_HEADER_BYTES as u64;
        bytes.extend(self.bytes(DreluKey::byte_len(n) - DRELU_KEY_HEADER_BYTES)?);
        let key = DreluKey::from_bytes(&bytes)
            .map_err(|e| MaterialError::Corrupt(format!("DReLU key at body byte {at}: {e}")))?;
        Ok(self.mine(DreluMaterial { key }))
    }

    fn bit_triples(
        &mut self,
        n: usize,
        lanes: u32,
    ) -> Result<Pair<BitTripleMaterial>, MaterialError> {
        let mut m = boolean::bit_triple_draw(&mut self.stream, self.party, n, lanes);
        if self.party == 1 {
            let bytes = self.bytes(boolean::bit_triple_len(n, lanes))?;
            boolean::bit_triple_read(&mut m, &bytes);
        }
        Ok(self.mine(m))
    }

    fn gmw_drelu(&mut self, n: usize) -> Result<Pair<GmwDreluMaterial>, MaterialError> {
        let mut m = boolean::gmw_draw(&mut self.stream, self.party, n);
        if self.party == 1 {
            let bytes = self.bytes(boolean::gmw_len(n))?;
            boolean::gmw_read(&mut m, &bytes);
        }
        Ok(self.mine(m))
    }

    fn b2a(&mut self, n: usize) -> Result<Pair<B2aMaterial>, MaterialError> {
        let mut m = boolean::b2a_draw(&mut self.stream, self.party, n);
        if self.party == 1 {
            let bytes = self.bytes(boolean::b2a_len(n))?;
            boolean::b2a_read(&mut m, &bytes);
        }
        Ok(self.mine(m))
    }

    fn bit_mux(
        &mut self,
        bit: &[usize],
        x: &[usize],
    ) -> Result<Pair<BitMuxMaterial>, MaterialError> {
        let out = Product::Elementwise.shape(bit, x)?;
        let mut m = boolean::bit_mux_draw(&mut self.stream, self.party, bit, x, &out);
        if self.party == 1 {
            let bytes = self.bytes(boolean::bit_mux_len(bit, &out))?;
            boolean::bit_mux_read(&mut m, &bytes);
        }
        Ok(self.mine(m))
    }

    fn shuffle(
        &mut self,
        perm: u32,
        rows: usize,
        k: usize,
    ) -> Result<Pair<ShuffleMaterial>, MaterialError> {
        check_rows(perm, rows, self.perms.get(&perm).map(Vec::len))?;
        let pi = match self.perms.get(&perm) {
            Some(pi) => pi.clone(),
            None => {
                let pi = draw_permutation(&mut self.stream, rows);
                self.perms.insert(perm, pi.clone());
                pi
            }
        };
        let shape = [rows, k];
        let masks = [self.expand(&shape), self.expand(&shape)];
        let delta = self.correction(&shape)?;
        let m = ShuffleMaterial::assemble(self.party, pi, masks, delta);
        Ok(self.mine(m))
    }

    fn block_matmul(
        &mut self,
        w: NodeId,
        seq: usize,
        block: usize,
    ) -> Result<Pair<BlockMatMulMaterial>, MaterialError> {
        let w_shape = (self.fixed_shapes.get(&w)).ok_or(MaterialError::NoFixedMask(w))?;
        let (a_shape, c_shape) = block_shapes(w_shape, seq, block)?;
        let a = self.expand(&a_shape);
        let c = self.product_share(&c_shape)?;
        let party = self.party;
        Ok(self.mine(BlockMatMulMaterial { party, block, a, c }))
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
