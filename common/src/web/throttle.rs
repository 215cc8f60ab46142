//! Slowing down guesses of a page token: a client (an IP address; an IPv6 client by its /64,
//! the block one machine gets) that presented [`WrongTokenLimit::attempts`] wrong tokens
//! within [`WrongTokenLimit::window`] may not present another until that window ends, and is
//! answered 429 with `Retry-After` meanwhile. Other clients are not slowed at all.
//!
//! Memory is bounded: at most [`MAX_TRACKED_CLIENTS`] clients are remembered; when that many
//! are, the one whose window began first is forgotten (it may then guess again, as it could
//! after its window anyway).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most clients remembered at once (a few hundred kilobytes at most).
const MAX_TRACKED_CLIENTS: usize = 4096;

/// How many wrong tokens a client may present within how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrongTokenLimit {
    /// Wrong tokens allowed within one window; the next request carrying a token waits.
    pub attempts: u32,
    /// How long a window lasts, from the client's first wrong token in it.
    pub window: Duration,
}

impl Default for WrongTokenLimit {
    /// 10 wrong tokens a minute: a person mistyping is never stopped, and a guesser gets
    /// 14 400 tries a day against a token of at least 16 characters (48 random hex digits
    /// unless one is given).
    fn default() -> WrongTokenLimit {
        WrongTokenLimit {
            attempts: 10,
            window: Duration::from_secs(60),
        }
    }
}

/// Who a request comes from, as far as counting guesses goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Client(IpAddr);

impl Client {
    /// The client at `address`: an IPv4 address as it is (an IPv4-mapped IPv6 one too), an
    /// IPv6 address by its /64, since one machine commonly holds a whole /64.
    pub(crate) fn at(address: IpAddr) -> Client {
        match address {
            IpAddr::V4(v4) => Client(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Client(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Client(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }
}

/// One client's wrong tokens in its current window.
#[derive(Debug, Clone, Copy)]
struct Tally {
    since: Instant,
    wrong: u32,
}

/// The wrong tokens of recent clients.
#[derive(Debug)]
pub(crate) struct Throttle {
    limit: WrongTokenLimit,
    /// A std mutex: held for a map operation, never across an `.await`.
    clients: Mutex<HashMap<Client, Tally>>,
}

impl Throttle {
    pub(crate) fn new(limit: WrongTokenLimit) -> Throttle {
        Throttle {
            limit,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// How long `client` must wait before its next token is looked at (`None`: not at all).
    pub(crate) fn wait(&self, client: Client) -> Option<Duration> {
        self.wait_at(client, Instant::now())
    }

    /// Counts one wrong token of `client`.
    pub(crate) fn record_wrong(&self, client: Client) {
        self.record_wrong_at(client, Instant::now());
    }

    fn wait_at(&self, client: Client, now: Instant) -> Option<Duration> {
        let mut clients = self.lock();
        let tally = *clients.get(&client)?;
        let ends = tally.since + self.limit.window;
        if now >= ends {
            clients.remove(&client);
            return None;
        }
        (tally.wrong >= self.limit.attempts).then(|| ends - now)
    }

    fn record_wrong_at(&self, client: Client, now: Instant) {
        let window = self.limit.window;
        let mut clients = self.lock();
        if let Some(tally) = clients.get_mut(&client) {
            if now >= tally.since + window {
                *tally = Tally {
                    since: now,
                    wrong: 1,
                };
            } else {
                tally.wrong = tally.wrong.saturating_add(1);
            }
            return;
        }
        if clients.len() >= MAX_TRACKED_CLIENTS {
            clients.retain(|_, tally| now < tally.since + window);
        }
        if clients.len() >= MAX_TRACKED_CLIENTS {
            let oldest = clients
                .iter()
                .min_by_key(|(_, tally)| tally.since)
                .map(|(client, _)| *client);
            if let Some(oldest) = oldest {
                clients.remove(&oldest);
            }
        }
        clients.insert(
            client,
            Tally {
                since: now,
                wrong: 1,
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Client, Tally>> {
        // A panic while holding it leaves a map that is still whole: keep using it.
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(text: &str) -> Client {
        Client::at(text.parse().expect("address"))
    }

    fn throttle() -> Throttle {
        Throttle::new(WrongTokenLimit {
            attempts: 3,
            window: Duration::from_secs(60),
        })
    }

    #[test]
    fn a_client_waits_after_its_wrong_tokens_until_its_window_ends() {
        let throttle = throttle();
        let start = Instant::now();
        let guesser = client("192.0.2.7");
        for _ in 0..3 {
            assert_eq!(throttle.wait_at(guesser, start), None);
            throttle.record_wrong_at(guesser, start);
        }
        let later = start + Duration::from_secs(20);
        assert_eq!(
            throttle.wait_at(guesser, later),
            Some(Duration::from_secs(40))
        );
        // Nobody else waits.
        assert_eq!(throttle.wait_at(client("192.0.2.8"), later), None);
        // The window over, it may try again, and its count starts afresh.
        let after = start + Duration::from_secs(60);
        assert_eq!(throttle.wait_at(guesser, after), None);
        throttle.record_wrong_at(guesser, after);
        assert_eq!(throttle.wait_at(guesser, after), None);
    }

    #[test]
    fn an_ipv6_machine_is_one_client_and_a_mapped_ipv4_is_the_ipv4() {
        assert_eq!(client("2001:db8:1:2::1"), client("2001:db8:1:2:ffff::9"));
        assert_ne!(client("2001:db8:1:2::1"), client("2001:db8:1:3::1"));
        assert_eq!(client("::ffff:192.0.2.7"), client("192.0.2.7"));
    }

    #[test]
    fn memory_is_bounded_and_the_oldest_client_goes_first() {
        let throttle = throttle();
        let start = Instant::now();
        let first = client("10.0.0.0");
        for _ in 0..3 {
            throttle.record_wrong_at(first, start);
        }
        for index in 1..=MAX_TRACKED_CLIENTS {
            let index = u32::try_from(index).expect("small");
            let other = Client::at(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + index)));
            throttle.record_wrong_at(other, start + Duration::from_millis(1));
        }
        assert_eq!(throttle.tracked(), MAX_TRACKED_CLIENTS);
        assert_eq!(
            throttle.wait_at(first, start + Duration::from_secs(1)),
            None,
            "the oldest was forgotten"
        );
    }
}
