//! Entry points for fuzzing the wire decoders that are private to this crate: the bounded
//! mutation tests (`fuzz_tests.rs`) and the `cargo fuzz` targets (`fuzz/`, feature
//! `fuzzing`) feed them bytes. Each returns whether the bytes decoded to anything, and
//! panics only on a broken invariant (a decoder reserving more than its caps), which is
//! what a fuzzer must find.

use std::io::Cursor;

use crate::dealer::wire::{self, HELLO_BYTES, PartyHello};
use crate::transport::Hello;
use crate::transport::frame;

/// The caps of [`frames`]: frames of 64 bytes, messages of 256, as a channel sets them.
pub const FRAME_CAP: usize = 64;
/// See [`FRAME_CAP`].
pub const MESSAGE_CAP: usize = 256;

/// A message of frames of any phase, read under [`FRAME_CAP`] and [`MESSAGE_CAP`].
pub fn frames(bytes: &[u8]) -> bool {
    match frame::read_message(
        &mut Cursor::new(bytes),
        FRAME_CAP as u64,
        MESSAGE_CAP as u64,
    ) {
        Ok(m) => {
            assert!(m.payload.len() <= MESSAGE_CAP, "a message above its cap");
            true
        }
        Err(_) => false,
    }
}

/// The parties' hello.
pub fn party_hello(bytes: &[u8]) -> bool {
    Hello::decode(bytes).is_ok()
}

/// A party's hello to the dealer, read with its exact size: a shorter or longer one never
/// decodes.
pub fn dealer_hello(bytes: &[u8]) -> bool {
    let Ok(exact) = <[u8; HELLO_BYTES]>::try_from(bytes) else {
        return false;
    };
    PartyHello::decode(&exact).is_ok()
}

/// A party's call requests to the dealer, one after the other.
pub fn call_requests(bytes: &[u8]) -> bool {
    let mut r = Cursor::new(bytes);
    let mut any = false;
    while let Ok(Some(_)) = wire::read_request(&mut r) {
        any = true;
    }
    any
}

/// The dealer's stream to a party: messages, each chunk's body skipped as the party reads
/// it.
pub fn dealer_stream(bytes: &[u8]) -> bool {
    let mut r = Cursor::new(bytes);
    let mut any = false;
    loop {
        match wire::read_from_dealer(&mut r) {
            Ok(wire::FromDealer::Chunk(n)) => {
                let at = r.position().saturating_add(u64::from(n));
                r.set_position(at);
                any = true;
            }
            Ok(_) => any = true,
            Err(_) => return any,
        }
    }
}
