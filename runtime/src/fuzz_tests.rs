//! Bounded mutation fuzzing of the wire decoders that are private to this crate (the
//! other input surfaces are fuzzed through the public API in `tests/fuzz.rs`): frames of
//! every phase (the handshake, setup exchanges, rounds; single and multi-frame), the
//! parties' hello, and the dealer service's messages both ways. Every mutated input must
//! decode to a value or an error, never a panic, and no decoder may reserve more than its
//! caps allow.

use comet_ir::{DimEnv, Party};

use crate::dealer::wire::{self, CallRequest, Grant, PartyHello};
use crate::fuzz_entry;
use crate::transport::Hello;
use crate::transport::Phase;
use crate::transport::frame;

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const EDGES: [u64; 12] = [
    0,
    1,
    2,
    16,
    255,
    1 << 20,
    1 << 32,
    1 << 40,
    1 << 63,
    u64::MAX,
    u32::MAX as u64,
    i64::MAX as u64,
];

/// One to four edits: bit flips, edge integers written at any offset and width,
/// insertions, deletions, truncation.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(b.len() + 1);
        match rng.below(5) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 => {
                let word = EDGES[rng.below(EDGES.len())].to_le_bytes();
                let n = [1, 2, 4, 8][rng.below(4)];
                for (k, byte) in word[..n].iter().enumerate() {
                    if let Some(x) = b.get_mut(at + k) {
                        *x = *byte;
                    }
                }
            }
            2 => {
                let junk: Vec<u8> = (0..1 + rng.below(24)).map(|_| rng.next() as u8).collect();
                b.splice(at..at, junk);
            }
            3 if !b.is_empty() => {
                let end = (at + 1 + rng.below(24)).min(b.len());
                b.drain(at.min(end)..end);
            }
            _ => b.truncate(rng.below(b.len() + 1)),
        }
    }
    b
}

/// Runs `n` mutations of `seeds` through `decode`; the number of inputs that decoded.
fn fuzz(n: usize, seed: u64, seeds: &[Vec<u8>], mut decode: impl FnMut(&[u8]) -> bool) -> usize {
    let mut rng = Rng(seed);
    let mut ok = 0;
    for s in seeds {
        assert!(decode(s), "a seed must decode");
    }
    for _ in 0..n {
        let s = &seeds[rng.below(seeds.len())];
        ok += usize::from(decode(&mutate(&mut rng, s)));
    }
    ok
}

/// A message of `payload` bytes in `phase`, in frames of at most `frame` bytes.
fn framed(phase: Phase, payload: &[u8], frame: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let chunks: Vec<&[u8]> = payload.chunks(frame).collect();
    for (i, c) in chunks.iter().enumerate() {
        out.extend(frame::encode_frame_header(
            phase,
            c.len(),
            i + 1 < chunks.len(),
        ));
        out.extend_from_slice(c);
    }
    out
}

#[test]
fn frames_of_every_phase_decode_or_fail_cleanly() {
    let payload: Vec<u8> = (0..200u8).collect();
    let seeds: Vec<Vec<u8>> = [
        Phase::Handshake,
        Phase::Setup(1),
        Phase::Setup(7),
        Phase::Round(3),
    ]
    .into_iter()
    .flat_map(|p| [framed(p, &payload, 64), framed(p, &payload[..10], 64)])
    .collect();
    // caps as a channel sets them: frames of 64 bytes, messages of 256 (fuzz_entry)
    let ok = fuzz(20_000, 1, &seeds, fuzz_entry::frames);
    eprintln!("fuzz frames: 20000 inputs, {ok} decoded, 0 panics");
}

#[test]
fn hellos_decode_or_fail_cleanly() {
    let seeds: Vec<Vec<u8>> = [Party::Server, Party::Client]
        .map(|p| Hello::new(p, [7; 32], [9; 32]).encode())
        .to_vec();
    let ok = fuzz(20_000, 2, &seeds, fuzz_entry::party_hello);
    eprintln!("fuzz party hellos: 20000 inputs, {ok} decoded, 0 panics");
    let seeds = vec![
        PartyHello {
            party: 1,
            plan_digest: [3; 32],
        }
        .encode()
        .to_vec(),
    ];
    let ok = fuzz(20_000, 3, &seeds, fuzz_entry::dealer_hello);
    eprintln!("fuzz dealer hellos: 20000 inputs, {ok} decoded, 0 panics");
}

#[test]
fn dealer_messages_decode_or_fail_cleanly() {
    // party → dealer: call requests
    let request = CallRequest {
        session: [5; 32],
        call: 2,
        env: DimEnv { seq: 1, past: 6 },
    };
    let seeds = vec![request.encode().to_vec()];
    let ok = fuzz(20_000, 4, &seeds, fuzz_entry::call_requests);
    eprintln!("fuzz call requests: 20000 inputs, {ok} decoded, 0 panics");

    // dealer → party: a whole session's stream
    let mut stream = Vec::new();
    let grant = Grant {
        plan_digest: [1; 32],
        session: [2; 32],
        seed: [3; 32],
        common: [4; 32],
    };
    wire::write_session(&mut stream, &grant).unwrap();
    wire::write_start(&mut stream, 0).unwrap();
    wire::write_chunk(&mut stream, &[9; 40]).unwrap();
    wire::write_end(&mut stream, 0, 40).unwrap();
    let mut refused = Vec::new();
    wire::write_refused(&mut refused, "session stopped: a reason").unwrap();
    let ok = fuzz(20_000, 5, &[stream, refused], fuzz_entry::dealer_stream);
    eprintln!("fuzz dealer streams: 20000 inputs, {ok} with a decoded message, 0 panics");
}
