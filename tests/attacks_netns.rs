//! Attacks on the hop limit, for real, across routers made of network
//! namespaces: `--hop-limit N` promises that every byte of a token response
//! leaves with IP TTL / IPv6 hop limit N, so a caller N routers away never
//! gets one, whatever it does on its connection. Each over IPv4 and IPv6.

mod support;

use std::net::SocketAddr;
use std::path::Path;

use support::netlab::*;
use support::*;

/// The daemon's addresses in the routed labs.
const ROUTED: [&str; 2] = ["10.200.1.1:1338", "[fd00:200:1::1]:1338"];
/// The daemon's addresses on the host's bridge.
const BRIDGED: [&str; 2] = ["10.200.9.1:1338", "[fd00:200:9::1]:1338"];

fn daemon(lab: &Lab, dir: &Path, listen: [&str; 2], extra: &[&str]) -> Daemon {
    let mut args = vec!["--issuer", "local", "--role-arn", ROLE_ARN];
    args.extend(["--listen", listen[0], "--listen", listen[1]]);
    args.extend_from_slice(extra);
    start_daemon_wrapped(&["ip", "netns", "exec", &lab.host], dir, &args, &[])
}

/// Two routers, the daemon with `--hop-limit 2 --imds-v1 allowed`: the near
/// container (one router) is entitled to tokens, the far one (two) is not.
fn two_routers_hop_limit_2(tag: &str) -> (Lab, tempfile::TempDir, Daemon) {
    let lab = Lab::two_routers(tag);
    let dir = temp_dir();
    let extra = ["--hop-limit", "2", "--imds-v1", "allowed"];
    let d = daemon(&lab, dir.path(), ROUTED, &extra);
    (lab, dir, d)
}

fn base(addr: &str) -> String {
    format!("http://{addr}")
}

fn sock(addr: &str) -> SocketAddr {
    addr.parse().unwrap()
}

/// The near container gets a token and the far one other answers: a
/// network where nothing gets through cannot pass these tests.
fn assert_the_network_works(lab: &Lab, addr: &str) {
    let url = base(addr);
    let got = lab.token_put(&lab.container, &url);
    assert_eq!(got, (0, "200".to_owned()), "{url}: near container's PUT");
    lab.assert_gets_instance_id(&lab.far, &url, "from the far container");
}

/// Token bytes the far container read, all reported at the end of a test,
/// so that one failure shows every attack and address family that leaked.
#[derive(Default)]
struct Leaks(Vec<String>);

impl Leaks {
    fn check(&mut self, what: &str, r: &Received) {
        if let Some(why) = token_in(&r.bytes) {
            let text = r.text();
            let end = &r.end;
            self.0
                .push(format!("{what}: read {why} (then {end}):\n{text}"));
        }
    }

    fn assert_none(self) {
        let n = self.0.len();
        let all = self.0.join("\n\n");
        assert!(
            n == 0,
            "the far container got token bytes {n} times:\n{all}"
        );
    }
}

fn assert_token(what: &str, r: &Received) {
    assert!(
        token_in(&r.bytes).is_some(),
        "{what}: the near container read no token (connection {}):\n{:?}",
        r.end,
        r.text()
    );
}

/// PUT and GET in one write on one connection.
fn pipelined() -> Session {
    Session::send(&format!("{PUT_TOKEN}{GET_INSTANCE_ID}"))
}

/// PUT, then a GET on the same connection `ms` later.
fn reused(ms: u64) -> Session {
    Session::send(PUT_TOKEN).then(ms, GET_INSTANCE_ID)
}

#[test]
fn with_hop_limit_2_a_plain_token_put_from_two_routers_away_gets_no_bytes() {
    let (lab, _dir, _d) = two_routers_hop_limit_2("a1");
    let mut leaks = Leaks::default();
    for addr in ROUTED {
        assert_the_network_works(&lab, addr);
        let r = session(&lab.far, sock(addr), &Session::send(PUT_TOKEN));
        leaks.check(addr, &r);
        assert!(r.bytes.is_empty(), "{addr}: {:?} ({})", r.text(), r.end);
        assert_eq!(r.end, "timeout", "{addr}: {:?}", r.text());
    }
    leaks.assert_none();
}

#[test]
fn with_hop_limit_2_a_get_pipelined_behind_the_token_put_never_carries_the_token_two_routers_away()
{
    let (lab, _dir, _d) = two_routers_hop_limit_2("a2");
    let mut leaks = Leaks::default();
    for addr in ROUTED {
        assert_the_network_works(&lab, addr);
        let got = sessions(&[
            (&lab.far, sock(addr), pipelined()),
            (&lab.container, sock(addr), pipelined()),
        ]);
        leaks.check(&format!("{addr}, PUT+GET in one write"), &got[0]);
        assert_token(&format!("{addr}, PUT+GET in one write"), &got[1]);
    }
    leaks.assert_none();
}

#[test]
fn with_hop_limit_2_reusing_the_connection_after_a_token_put_never_carries_the_token_two_routers_away(
) {
    let (lab, _dir, _d) = two_routers_hop_limit_2("a3");
    let mut leaks = Leaks::default();
    let delays = [50, 150, 300];
    for addr in ROUTED {
        assert_the_network_works(&lab, addr);
        let mut runs: Vec<_> = delays
            .iter()
            .map(|&ms| (lab.far.as_str(), sock(addr), reused(ms)))
            .collect();
        runs.push((&lab.container, sock(addr), reused(150)));
        let got = sessions(&runs);
        for (ms, r) in delays.iter().zip(&got) {
            leaks.check(&format!("{addr}, GET {ms} ms after the PUT"), r);
        }
        assert_token(&format!("{addr}, GET 150 ms after the PUT"), &got[3]);
    }
    leaks.assert_none();
}

#[test]
fn with_hop_limit_2_a_slow_reader_with_a_tiny_receive_buffer_never_gets_the_token_two_routers_away()
{
    let (lab, _dir, _d) = two_routers_hop_limit_2("a4");
    let mut leaks = Leaks::default();
    // The smallest receive buffer, read 100 bytes at a time every 50 ms.
    let slow = |s: Session| Session {
        rcvbuf: 1,
        chunk: 100,
        pause_ms: 50,
        read_ms: 4000,
        ..s
    };
    // Just the PUT; and a window filled with answers before the PUT, so its
    // response waits in the daemon's send queue until the reader catches up.
    let alone = slow(Session::send(PUT_TOKEN));
    let behind = slow(Session::send(&GET_INSTANCE_ID.repeat(20)).then(300, PUT_TOKEN));
    for addr in ROUTED {
        assert_the_network_works(&lab, addr);
        let got = sessions(&[
            (&lab.far, sock(addr), alone.clone()),
            (&lab.far, sock(addr), behind.clone()),
            (&lab.container, sock(addr), behind.clone()),
        ]);
        leaks.check(&format!("{addr}, PUT alone"), &got[0]);
        leaks.check(&format!("{addr}, PUT behind 20 answers"), &got[1]);
        assert_token(&format!("{addr}, PUT behind 20 answers"), &got[2]);
    }
    leaks.assert_none();
}

#[test]
fn with_hop_limit_2_and_a_router_losing_a_quarter_of_the_packets_no_token_reaches_two_routers_away()
{
    let (lab, _dir, _d) = two_routers_hop_limit_2("a5");
    for addr in ROUTED {
        assert_the_network_works(&lab, addr);
    }
    lab.lossy(&lab.router);
    let mut leaks = Leaks::default();
    let attacks = [
        ("PUT+GET in one write", pipelined()),
        ("GET 50 ms after the PUT", reused(50)),
        ("GET 150 ms after the PUT", reused(150)),
        ("GET 300 ms after the PUT", reused(300)),
    ];
    for addr in ROUTED {
        // Every attack 4 times from the far container and once from the
        // near one, all at once.
        let mut runs = Vec::new();
        for round in 0..5 {
            for (what, s) in &attacks {
                let ns = if round < 4 { &lab.far } else { &lab.container };
                runs.push((ns.as_str(), sock(addr), s.clone(), *what));
            }
        }
        let plain: Vec<_> = runs
            .iter()
            .map(|(n, a, s, _)| (*n, *a, s.clone()))
            .collect();
        let got = sessions(&plain);
        let mut near_tokens = 0;
        for ((ns, _, _, what), r) in runs.iter().zip(&got) {
            if *ns == lab.far {
                leaks.check(&format!("{addr} with loss, {what}"), r);
            } else if token_in(&r.bytes).is_some() {
                near_tokens += 1;
            }
        }
        assert!(
            near_tokens > 0,
            "{addr}: with loss, no near session got a token"
        );
        // And the far container still gets other answers, now and then.
        let url = format!("{}/latest/meta-data/instance-id", base(addr));
        let answered = (0..5).any(|_| lab.curl(&lab.far, &[&url]) == (0, "200".to_owned()));
        assert!(answered, "{addr}: 5 GETs from the far container all failed");
    }
    leaks.assert_none();
}

#[test]
fn a_container_on_the_hosts_bridge_is_refused_a_token_with_403_unless_the_hop_limit_is_2() {
    let lab = Lab::bridge("br");
    let dir = temp_dir();
    let d = daemon(&lab, dir.path(), BRIDGED, &[]);
    for addr in BRIDGED {
        let url = base(addr);
        // The host itself, from its own address on the bridge: a token.
        let got = lab.token_put(&lab.host, &url);
        assert_eq!(got, (0, "200".to_owned()), "{url} from the host");
        // The container: no router, so TTL 1 would reach it. A clear no.
        let got = lab.token_put(&lab.container, &url);
        assert_eq!(got, (0, "403".to_owned()), "{url} from the container");
    }
    assert!(
        d.wait_for_log(
            "not this host's own address",
            std::time::Duration::from_secs(5)
        ),
        "no refusal logged:\n{}",
        d.log()
    );
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");

    let _d = daemon(&lab, dir.path(), BRIDGED, &["--hop-limit", "2"]);
    for addr in BRIDGED {
        let got = lab.token_put(&lab.container, &base(addr));
        assert_eq!(got, (0, "200".to_owned()), "{addr} with hop-limit 2");
    }
}

#[test]
fn with_hop_limit_1_a_container_behind_a_router_is_refused_a_token_with_403() {
    let lab = Lab::two_routers("c");
    let dir = temp_dir();
    let _d = daemon(&lab, dir.path(), ROUTED, &["--imds-v1", "allowed"]);
    for addr in ROUTED {
        let url = base(addr);
        assert_eq!(lab.token_put(&lab.host, &url), (0, "200".to_owned()));
        lab.assert_container_gets_instance_id(&url, "with hop-limit 1");
        for ns in [&lab.container, &lab.far] {
            let got = lab.token_put(ns, &url);
            assert_eq!(got, (0, "403".to_owned()), "{url} from {ns}");
        }
    }
}

#[test]
fn with_hop_limit_2_a_dual_stack_listener_holds_the_limit_for_ipv4_callers_too() {
    // An IPv4 caller of a `[::]` listener is served by an IPv6 socket, whose
    // IPv4 packets take their TTL from IP_TTL, not the IPv6 hop limit.
    let lab = Lab::two_routers("ds");
    let dir = temp_dir();
    let extra = ["--hop-limit", "2", "--imds-v1", "allowed"];
    let _d = daemon(&lab, dir.path(), ["[::]:1338", "127.0.0.1:1339"], &extra);
    let mut leaks = Leaks::default();
    for addr in ROUTED {
        assert_the_network_works(&lab, addr);
        let got = sessions(&[
            (&lab.far, sock(addr), pipelined()),
            (&lab.far, sock(addr), reused(150)),
            (&lab.container, sock(addr), pipelined()),
        ]);
        leaks.check(&format!("{addr} on [::], PUT+GET in one write"), &got[0]);
        leaks.check(&format!("{addr} on [::], GET 150 ms later"), &got[1]);
        assert_token(&format!("{addr} on [::], PUT+GET in one write"), &got[2]);
    }
    leaks.assert_none();
}
