//! The wire: the first byte chooses the decoder (frames of every phase under a channel's
//! caps, the parties' hello, a party's hello to the dealer, call requests, the dealer's
//! stream), the rest is its input.
#![no_main]

use comet_runtime::fuzz_entry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let _ = match which % 5 {
        0 => fuzz_entry::frames(bytes),
        1 => fuzz_entry::party_hello(bytes),
        2 => fuzz_entry::dealer_hello(bytes),
        3 => fuzz_entry::call_requests(bytes),
        _ => fuzz_entry::dealer_stream(bytes),
    };
});
