//! An HTTP/1.1 relay on loopback in front of moto that SIGKILLs a process
//! when it sees a chosen AWS action: before relaying the call (the call
//! never happens) or after moto answered it (it happened, but the caller
//! never learns). Every action relayed is recorded. Each connection carries
//! one call: answers go back with `connection: close`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// When to kill, relative to the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Before the call reaches moto.
    Before,
    /// After moto answered, before the answer is passed on.
    After,
}

#[derive(Debug, Clone)]
struct Rule {
    action: String,
    when: When,
    pid: u32,
}

/// A running relay.
pub struct KillProxy {
    /// Its URL, to give as the STS and IAM endpoints.
    pub url: String,
    rule: Arc<Mutex<Option<Rule>>>,
    seen: Arc<Mutex<Vec<String>>>,
}

/// One HTTP message: head and body.
fn read_message(r: &mut impl BufRead) -> Option<(String, Vec<u8>)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let end = line == "\r\n";
        head.push_str(&line);
        if end {
            break;
        }
    }
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    r.read_exact(&mut body).ok()?;
    Some((head, body))
}

/// `Action=X` of a query-protocol call.
fn action_of(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .split('&')
        .find_map(|p| p.strip_prefix("Action=").map(str::to_owned))
        .unwrap_or_default()
}

fn kill(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

fn relay(
    client: TcpStream,
    upstream: &str,
    rule: &Mutex<Option<Rule>>,
    seen: &Mutex<Vec<String>>,
) -> Option<()> {
    let mut reader = BufReader::new(client.try_clone().ok()?);
    let (head, body) = read_message(&mut reader)?;
    let action = action_of(&body);
    seen.lock().unwrap().push(action.clone());
    let fire = |when: When| {
        let mut r = rule.lock().unwrap();
        if r.as_ref()
            .is_some_and(|r| r.action == action && r.when == when)
        {
            kill(r.take().unwrap().pid);
            return true;
        }
        false
    };
    if fire(When::Before) {
        return None;
    }
    let mut up = TcpStream::connect(upstream).ok()?;
    up.write_all(head.as_bytes()).ok()?;
    up.write_all(&body).ok()?;
    let (answer_head, answer_body) = read_message(&mut BufReader::new(up))?;
    if fire(When::After) {
        return None;
    }
    let mut head = String::new();
    for line in answer_head.lines().filter(|l| !l.is_empty()) {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            head.push_str(line);
            head.push_str("\r\n");
        }
    }
    head.push_str("connection: close\r\n\r\n");
    let mut client = client;
    client.write_all(head.as_bytes()).ok()?;
    client.write_all(&answer_body).ok()
}

impl KillProxy {
    /// A relay to `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> KillProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let rule: Arc<Mutex<Option<Rule>>> = Arc::default();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let (r, s) = (rule.clone(), seen.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (r, s, up) = (r.clone(), s.clone(), upstream.clone());
                std::thread::spawn(move || relay(client, &up, &r, &s));
            }
        });
        KillProxy { url, rule, seen }
    }

    /// Kill `pid` at the next `action`, `when`.
    pub fn arm(&self, action: &str, when: When, pid: u32) {
        *self.rule.lock().unwrap() = Some(Rule {
            action: action.to_owned(),
            when,
            pid,
        });
    }

    /// Whether the armed kill has happened.
    pub fn fired(&self) -> bool {
        self.rule.lock().unwrap().is_none()
    }

    /// The actions relayed so far, in order.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}
