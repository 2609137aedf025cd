//! The session's setup larger than a channel's message cap: two parties over loopback TCP
//! whose channels take frames of at most 64 KiB and messages of at most 256 KiB run the
//! real model, because the setup sends `W − B` in exchanges of at most 256 KiB (each in
//! frames of 64 KiB); with 64 MiB chunks the same channel refuses the setup's first message
//! (so the cap is real and the chunking is what makes it pass).

mod common;

use comet_ir::Party;
use comet_ir::Program;
use comet_runtime::dealer::{file, plan_digest};
use comet_runtime::interp::{InProcess, Measured, Outputs, RemoteParty, RunOptions, deal_to_files};
use comet_runtime::transport::{
    Channel, Hello, Security, TcpChannel, TcpListenerHandle, TcpOptions,
};
use common::reference::{env, last_row, load_weights, tokens};
use std::time::Duration;

const MESSAGE_BYTES: u64 = 256 << 10;

fn glassllm() -> Program {
    let src = std::fs::read_to_string("examples/glassllm.model").unwrap();
    comet_compiler::compile(&src, "glassllm.model", &comet_compiler::Options::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .program
}

fn tcp_options() -> TcpOptions {
    TcpOptions {
        max_frame_bytes: 64 << 10,
        max_message_bytes: MESSAGE_BYTES,
        read_timeout: Duration::from_secs(30),
        ..TcpOptions::default()
    }
}

/// Party `p` of one prefill call over TCP with setup chunks of `chunk_bytes`.
fn party(
    program: &Program,
    p: u8,
    dir: &std::path::Path,
    ch: TcpChannel,
    chunk_bytes: usize,
) -> Result<(Outputs, Measured), String> {
    let mut ch = ch;
    let digest = plan_digest(program);
    let used = file::UsedList::at(&dir.join("state")).map_err(|e| e.to_string())?;
    let verified = file::open(&dir.join(format!("party{p}.mat")), p, &digest, &used)
        .map_err(|e| e.to_string())?;
    let who = if p == 0 { Party::Server } else { Party::Client };
    let hello = Hello::new(who, digest, verified.header().session);
    ch.handshake(&hello).map_err(|e| e.to_string())?;
    let (header, replay) = verified.mark_used(&used).map_err(|e| e.to_string())?;
    let weights = if p == 0 {
        load_weights(program)
    } else {
        Default::default()
    };
    let options = RunOptions {
        chunk_bytes,
        ..RunOptions::default()
    };
    let mut session = RemoteParty::from_owned(program, weights, replay, ch).with_options(options);
    let inputs = if p == 1 {
        tokens(&[41.0, 69.0, 186.0])
    } else {
        Default::default()
    };
    session
        .call(&inputs, header.calls[0])
        .map_err(|e| e.to_string())
}

/// Runs both parties over loopback; returns each party's result.
fn run(chunk_bytes: usize, dir: &str) -> [Result<(Outputs, Measured), String>; 2] {
    let program = glassllm();
    let dir = common::temp_path(dir);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    deal_to_files(&program, &[env(3, 0)], &dir, [7; 32], [9; 32], |_, _| {}).unwrap();
    let (listener, addr) = TcpListenerHandle::bind("127.0.0.1:0").unwrap();
    let opts = tcp_options();
    std::thread::scope(|s| {
        let (program, dir, opts) = (&program, &dir, &opts);
        let server = s.spawn(move || {
            let ch = listener
                .accept(opts, &Security::InsecurePlaintext)
                .map_err(|e| e.to_string())?;
            party(program, 0, dir, ch, chunk_bytes)
        });
        let client = s.spawn(move || {
            let ch = TcpChannel::connect(addr, opts, &Security::InsecurePlaintext)
                .map_err(|e| e.to_string())?;
            party(program, 1, dir, ch, chunk_bytes)
        });
        [server.join().unwrap(), client.join().unwrap()]
    })
}

#[test]
fn a_setup_larger_than_one_frame_is_sent_in_chunks() {
    let [server, client] = run(MESSAGE_BYTES as usize, "setup-chunks");
    let (_, m0) = server.unwrap();
    let (out, m1) = client.unwrap();
    // the setup (glassllm's fixed operands: ~8 MiB per party) took many frames
    assert!(m1.setup_bits / 8 > 8 * MESSAGE_BYTES, "{m1:?}");
    assert_eq!(m0.setup_bits, m1.setup_bits);
    // the same call in one process (unchunked, another dealer): the same setup bytes,
    // online bytes and rounds, and the same greedy token
    let program = glassllm();
    let weights = load_weights(&program);
    let mut session = InProcess::new(&program, &weights, 3);
    let (reference, m) = session
        .call(&tokens(&[41.0, 69.0, 186.0]), env(3, 0))
        .unwrap();
    assert_eq!(
        (m1.setup_bits, m1.online_bits, m1.rounds),
        (m.setup_bits, m.online_bits, m.rounds)
    );
    let (a, b) = (last_row(&out["logits"]), last_row(&reference["logits"]));
    assert_eq!(common::reference::argmax(&a), common::reference::argmax(&b));
    assert!(common::reference::max_abs_diff(&a, &b) < 0.1);
}

#[test]
fn unchunked_the_same_setup_is_refused_by_the_message_cap() {
    let [server, client] = run(64 << 20, "setup-unchunked");
    let errors = format!("{:?} {:?}", server.err(), client.err());
    assert!(errors.contains("maximum of 262144 bytes"), "{errors}");
}

/// Sizes whose shapes overflow (from a forged file, say) are an error before anything is
/// allocated, never a wrapped size or a panic.
#[test]
fn call_sizes_that_overflow_are_an_error() {
    let program = glassllm();
    for seq in [1u64 << 62, u64::MAX] {
        let e = comet_runtime::interp::ExecPlan::new(&program, comet_ir::DimEnv { seq, past: 0 })
            .unwrap_err();
        assert!(e.to_string().contains("the call's sizes do not fit"), "{e}");
    }
}
