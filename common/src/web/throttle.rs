//! Slowing down guesses of a page token: a client (an IP address; an IPv6 client by its /64,
//! the block one machine gets) that presented [`WrongTokenLimit::attempts`] wrong tokens
//! within [`WrongTokenLimit::window`] may not present another until that window ends, and is
//! answered 429 with `Retry-After` meanwhile. Other clients are not slowed by it.
//!
//! And all clients together: once [`WrongTokenLimit::attempts_from_all`] wrong tokens came
//! within one window, from however many addresses, no token is looked at until that window
//! ends. Someone holding many addresses (a /48 of IPv6 is 65 536 clients) gains nothing by
//! spreading guesses, nor by making the table below forget clients.
//!
//! The trade-off, which the README states: while a client waits, its right token waits too
//! (429: a token is only known right by looking at it, and looking is the guess), and while
//! everyone waits, everyone does. A browser already signed in keeps working (its cookie is
//! no guess), and the wait ends with the window (a minute by default). On loopback every
//! local user is 127.0.0.1, behind NAT or a reverse proxy every client has one address: one
//! guesser slows them all.
//!
//! Memory and time are bounded: at most [`MAX_TRACKED_CLIENTS`] clients are remembered; when
//! that many are, the one whose window began first is forgotten (it may then guess again,
//! as it could after its window anyway, within the limit of all clients). Windows are kept
//! in the order they began, so finding the first is taking the front of a queue, not a scan
//! of the table: every wrong token costs a constant time (amortised) under the lock.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most clients remembered at once (a few hundred kilobytes at most).
const MAX_TRACKED_CLIENTS: usize = 4096;

/// How many wrong tokens a client, and all clients, may present within how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrongTokenLimit {
    /// Wrong tokens one client may present within one window; its next request carrying a
    /// token waits.
    pub attempts: u32,
    /// Wrong tokens all clients together may present within one window; then every request
    /// carrying a token waits.
    pub attempts_from_all: u32,
    /// How long a window lasts, from the first wrong token in it.
    pub window: Duration,
}

impl Default for WrongTokenLimit {
    /// 10 wrong tokens a minute per client, 100 a minute from all: a person mistyping is
    /// never stopped, and guessers together get 144 000 tries a day against a token of at
    /// least 16 characters (48 random hex digits unless one is given).
    fn default() -> WrongTokenLimit {
        WrongTokenLimit {
            attempts: 10,
            attempts_from_all: 100,
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

/// Wrong tokens in one window.
#[derive(Debug, Clone, Copy)]
struct Tally {
    since: Instant,
    wrong: u32,
}

impl Tally {
    fn new(now: Instant) -> Tally {
        Tally {
            since: now,
            wrong: 1,
        }
    }

    fn ends(self, window: Duration) -> Instant {
        self.since + window
    }

    /// Counts one more wrong token at `now`: in this window, or as the first of a new one
    /// (`true`: a new window began).
    fn count(&mut self, now: Instant, window: Duration) -> bool {
        if now >= self.ends(window) {
            *self = Tally::new(now);
            true
        } else {
            self.wrong = self.wrong.saturating_add(1);
            false
        }
    }
}

/// The wrong tokens of recent clients, and of all clients.
#[derive(Debug, Default)]
struct Tallies {
    clients: HashMap<Client, Tally>,
    /// Each window of `clients` as (its start, its client), in the order they began. An
    /// entry whose client's window has restarted since, or was forgotten, is stale: it is
    /// dropped when it reaches the front.
    began: VecDeque<(Instant, Client)>,
    /// All clients' wrong tokens in the current window.
    all: Option<Tally>,
}

impl Tallies {
    /// Whether `client`'s window is the one that began at `since`.
    fn is_current(&self, since: Instant, client: Client) -> bool {
        self.clients
            .get(&client)
            .is_some_and(|tally| tally.since == since)
    }

    /// Forgets the windows that ended by `now` (and stale entries before them).
    fn forget_ended(&mut self, now: Instant, window: Duration) {
        while let Some(&(since, client)) = self.began.front() {
            if now < since + window {
                break;
            }
            self.began.pop_front();
            if self.is_current(since, client) {
                self.clients.remove(&client);
            }
        }
    }

    /// Forgets the client whose window began first.
    fn forget_oldest(&mut self) {
        while let Some((since, client)) = self.began.pop_front() {
            if self.is_current(since, client) {
                self.clients.remove(&client);
                return;
            }
        }
    }
}

/// The wrong tokens of recent clients.
#[derive(Debug)]
pub(crate) struct Throttle {
    limit: WrongTokenLimit,
    /// A std mutex: held for a few map and queue operations, never across an `.await`.
    tallies: Mutex<Tallies>,
}

impl Throttle {
    pub(crate) fn new(limit: WrongTokenLimit) -> Throttle {
        Throttle {
            limit,
            tallies: Mutex::new(Tallies::default()),
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
        let window = self.limit.window;
        let tallies = self.lock();
        let until = |tally: Tally, most: u32| {
            let ends = tally.ends(window);
            (now < ends && tally.wrong >= most).then(|| ends - now)
        };
        let own = tallies
            .clients
            .get(&client)
            .and_then(|tally| until(*tally, self.limit.attempts));
        let everyone = tallies
            .all
            .and_then(|tally| until(tally, self.limit.attempts_from_all));
        own.max(everyone)
    }

    fn record_wrong_at(&self, client: Client, now: Instant) {
        let window = self.limit.window;
        let mut tallies = self.lock();
        match &mut tallies.all {
            Some(all) => {
                all.count(now, window);
            }
            None => tallies.all = Some(Tally::new(now)),
        }
        tallies.forget_ended(now, window);
        if let Some(tally) = tallies.clients.get_mut(&client) {
            if tally.count(now, window) {
                tallies.began.push_back((now, client));
            }
            return;
        }
        if tallies.clients.len() >= MAX_TRACKED_CLIENTS {
            tallies.forget_oldest();
        }
        tallies.clients.insert(client, Tally::new(now));
        tallies.began.push_back((now, client));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tallies> {
        // A panic while holding it leaves a map and a queue that are still whole: keep using
        // them (a stale queue entry is only skipped).
        self.tallies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[cfg(test)]
    fn tracked(&self) -> (usize, usize) {
        let tallies = self.lock();
        (tallies.clients.len(), tallies.began.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(text: &str) -> Client {
        Client::at(text.parse().expect("address"))
    }

    fn numbered(index: usize) -> Client {
        let index = u32::try_from(index).expect("small");
        Client::at(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + index)))
    }

    fn throttle(attempts_from_all: u32) -> Throttle {
        Throttle::new(WrongTokenLimit {
            attempts: 3,
            attempts_from_all,
            window: Duration::from_secs(60),
        })
    }

    #[test]
    fn a_client_waits_after_its_wrong_tokens_until_its_window_ends() {
        let throttle = throttle(1000);
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
        let throttle = throttle(u32::MAX);
        let start = Instant::now();
        let at = |millis: u64| start + Duration::from_millis(millis);
        let (first, second) = (client("192.0.2.1"), client("192.0.2.2"));
        for _ in 0..3 {
            throttle.record_wrong_at(first, at(0));
            throttle.record_wrong_at(second, at(1));
        }
        // The table fills up.
        for index in 2..MAX_TRACKED_CLIENTS {
            throttle.record_wrong_at(numbered(index), at(2));
        }
        assert_eq!(
            throttle.tracked(),
            (MAX_TRACKED_CLIENTS, MAX_TRACKED_CLIENTS)
        );
        // One more client: the one whose window began first goes, and only it.
        throttle.record_wrong_at(client("192.0.2.3"), at(3));
        assert_eq!(throttle.wait_at(first, at(4)), None, "forgotten");
        assert!(throttle.wait_at(second, at(4)).is_some(), "remembered");
        throttle.record_wrong_at(client("192.0.2.4"), at(5));
        assert_eq!(throttle.wait_at(second, at(6)), None, "then forgotten");
        assert_eq!(
            throttle.tracked(),
            (MAX_TRACKED_CLIENTS, MAX_TRACKED_CLIENTS)
        );
        // Once their windows are over, the next wrong token forgets them all at once.
        let over = at(3) + Duration::from_secs(60);
        throttle.record_wrong_at(first, over);
        assert_eq!(throttle.tracked(), (2, 2), "192.0.2.4 and the first, anew");
    }

    #[test]
    fn guesses_spread_over_many_addresses_stop_at_the_limit_of_all() {
        let throttle = throttle(50);
        let start = Instant::now();
        // One wrong token from each of many addresses, looked at only when the throttle
        // lets it through (as the guard does): none reaches its own limit, together they
        // reach the limit of all.
        let now = start + Duration::from_millis(1);
        let mut looked_at = 0;
        for index in 0..200 {
            let guesser = numbered(index);
            match throttle.wait_at(guesser, now) {
                None => {
                    looked_at += 1;
                    throttle.record_wrong_at(guesser, start);
                }
                Some(wait) => assert_eq!(wait, Duration::from_secs(60) - Duration::from_millis(1)),
            }
        }
        assert_eq!(looked_at, 50);
        // A client that never guessed waits too, until the window of all ends.
        let later = start + Duration::from_secs(45);
        assert_eq!(
            throttle.wait_at(client("192.0.2.200"), later),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            throttle.wait_at(client("192.0.2.200"), start + Duration::from_secs(60)),
            None
        );
    }
}
