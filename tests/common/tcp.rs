//! Two parties over loopback TCP, one thread each, with their material from files dealt
//! ahead or from the dealer service streaming each call (and its thread).

use comet_ir::{DimEnv, Program};
use comet_runtime::interp;
use ndarray::ArrayD;
use std::collections::HashMap;

/// A call's inputs for `p` at `env` from a seed (call k uses seed 10 + k).
pub type Inputs = fn(&Program, DimEnv, u64) -> HashMap<String, ArrayD<f64>>;

/// Where the TCP parties' material comes from.
#[derive(Clone, Copy, Debug)]
pub enum Source {
    /// Material files dealt ahead (`comet deal`).
    Files,
    /// The dealer service, streaming each call (`comet dealer`).
    Dealer,
}

/// One party of a TCP session: its outputs and figures per call.
pub type PartyCalls = Vec<(interp::Outputs, interp::Measured)>;

/// A party's material: its session id, its replay, and the dealer's stream if any.
type Material = (
    [u8; 32],
    comet_runtime::dealer::PartyReplay,
    Option<comet_runtime::dealer::DealerStream>,
);

/// Party `p` over `ch`, with its `material`.
fn tcp_party(
    p: &Program,
    party: u8,
    w: &HashMap<String, ArrayD<f64>>,
    calls: &[DimEnv],
    mut ch: comet_runtime::transport::TcpChannel,
    material: Material,
    inputs: Inputs,
) -> PartyCalls {
    let (session_id, replay, mut stream) = material;
    use comet_runtime::transport::{Channel, Hello};
    let who = if party == 0 {
        comet_ir::Party::Server
    } else {
        comet_ir::Party::Client
    };
    let digest = comet_runtime::dealer::plan_digest(p);
    ch.handshake(&Hello::new(who, digest, session_id)).unwrap();
    let mut session = interp::RemoteParty::new(p, w, replay, ch);
    let mut out = Vec::new();
    for (k, &env) in calls.iter().enumerate() {
        if let Some(s) = &mut stream {
            s.begin_call(env).unwrap();
        }
        let x = inputs(p, env, 10 + k as u64);
        out.push(
            session
                .call(&x, env)
                .unwrap_or_else(|e| panic!("party {party}, call {k}: {e}")),
        );
        if let Some(s) = &mut stream {
            s.end_call().unwrap();
        }
    }
    out
}

/// Both parties over loopback TCP, one thread each (and the dealer service's thread).
pub fn tcp_session(
    p: &Program,
    w: &HashMap<String, ArrayD<f64>>,
    calls: &[DimEnv],
    source: Source,
    inputs: Inputs,
) -> [PartyCalls; 2] {
    use comet_runtime::dealer::{DealerService, DealerStream, file, plan_digest};
    use comet_runtime::transport::{
        ChannelKey, DealerAuth, DealerIdentity, DealerKeypair, Security, TcpChannel,
        TcpListenerHandle, TcpOptions,
    };
    let opts = TcpOptions::default();
    let dealer_key = DealerKeypair::generate().unwrap();
    let pinned = DealerAuth::Pinned(dealer_key.public());
    let digest = plan_digest(p);
    let dir =
        std::env::temp_dir().join(format!("comet-tcp-{}-{}", p.info.name, std::process::id()));
    let (listener, addr) = TcpListenerHandle::bind("127.0.0.1:0").unwrap();
    let service = match source {
        Source::Dealer => Some(
            DealerService::bind(
                "127.0.0.1:0",
                digest,
                &opts,
                DealerIdentity::Key(dealer_key),
            )
            .unwrap(),
        ),
        Source::Files => {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            interp::deal_to_files(p, calls, &dir, [3; 32], [4; 32], |_, _| {}).unwrap();
            None
        }
    };
    let dealer_addr = service.as_ref().map(|s| s.local_addr().to_string());
    let open = |party: u8| match &dealer_addr {
        Some(a) => {
            let (stream, replay) = DealerStream::connect(a, party, digest, &opts, &pinned).unwrap();
            (stream.session(), replay, Some(stream))
        }
        None => {
            let path = dir.join(format!("party{party}.mat"));
            // a fresh list per session (the tests deal with fixed seeds and nonces)
            let used = file::UsedList::at(&dir.join("state")).unwrap();
            let verified = file::open(&path, party, &digest, &used).unwrap();
            let (header, replay) = verified.mark_used(&used).unwrap();
            (header.session, replay, None)
        }
    };
    std::thread::scope(|s| {
        if let Some(service) = service {
            s.spawn(move || {
                let mut deal = |env, d: &mut _, set_up| {
                    interp::deal_call(p, env, d, set_up).map_err(|e| e.to_string())
                };
                let report = service.serve_session(&mut deal, &mut |_| {}).unwrap();
                report.outcome.unwrap();
            });
        }
        let (open, opts) = (&open, &opts);
        let server = s.spawn(move || {
            let material = open(0);
            let key = ChannelKey::derive(&material.1.channel_secret(), &digest, &material.0);
            let ch = listener.accept(opts, &Security::Psk(key)).unwrap();
            assert!(ch.is_encrypted());
            tcp_party(p, 0, w, calls, ch, material, inputs)
        });
        let client = s.spawn(move || {
            let material = open(1);
            let key = ChannelKey::derive(&material.1.channel_secret(), &digest, &material.0);
            let ch = TcpChannel::connect(addr, opts, &Security::Psk(key)).unwrap();
            tcp_party(p, 1, w, calls, ch, material, inputs)
        });
        [server.join().unwrap(), client.join().unwrap()]
    })
}
