//! Where a request asked for by a web page may go (SPEC section 6): a page or API reachable
//! from other hosts refuses targets that resolve to loopback, private, link-local or
//! unspecified addresses, so that whoever holds its token cannot use it to reach what only
//! the machine it runs on can reach (a database on `127.0.0.1:6379`, a cloud metadata service
//! on `169.254.169.254`, the office network on `10.…`).
//!
//! Written once for both programs: the classification ([`AddressClass::of`]), the rule a
//! listening address implies ([`TargetPolicy::for_listener`], and [`TargetGuard::for_pages`],
//! which also says it in the log), and the guard that resolves a host once, checks every
//! address and gives exactly the addresses to connect to ([`TargetGuard::addresses`]). The HTTP clients connect only through it (`common::client`
//! for Send again, the sender's delivery transport for deliveries and Test webhook), so a name
//! whose DNS answer changes after a page checked it (DNS rebinding) is refused at connect
//! time, before any packet leaves. Resolution is a [`Resolve`] the guard takes, so tests answer
//! names themselves instead of asking a DNS server (`TableResolver`, feature
//! `test-resolver`).
//!
//! What counts as internal, and why:
//! - IPv4: `0.0.0.0/8` (this network; Linux connects `0.0.0.0` to the machine itself),
//!   `127.0.0.0/8` (loopback), `10/8`, `172.16/12`, `192.168/16` (RFC 1918), `169.254/16`
//!   (link-local, the cloud metadata address), `100.64/10` (shared address space, RFC 6598:
//!   carrier-grade NAT, and what Tailscale and some clouds use inside their networks),
//!   `255.255.255.255`, and the ranges reserved for use inside a network: `192.0.0/24` (IETF
//!   protocol assignments, where some translators and DS-Lite answer), `198.18/15`
//!   (benchmarking, used on lab networks) and `240/4` (reserved; some clouds route it inside).
//! - IPv6: `::` and `::1`, `fc00::/7` (unique local), `fec0::/10` (the old site-local),
//!   `fe80::/10` (link-local), and every form that carries an IPv4 address inside, judged by
//!   that address: mapped `::ffff:a.b.c.d`, translated `::ffff:0:a.b.c.d` (RFC 2765),
//!   compatible `::a.b.c.d`, NAT64's well-known prefix `64:ff9b::a.b.c.d` (RFC 6052).
//!   NAT64's local-use prefix `64:ff9b:1::/48` (RFC 8215) is refused whatever it carries:
//!   its translator is inside the network and its IPv4 side may be too.
//!   6to4 (`2002::/16`) is left alone: it reaches the internet through a relay, not the
//!   embedded address on this machine's network.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

/// Why an address is internal: what [`TargetPolicy::PublicOnly`] refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// `127.0.0.0/8`, `::1`: this machine.
    Loopback,
    /// RFC 1918 (`10/8`, `172.16/12`, `192.168/16`), IPv6 unique local `fc00::/7` and the
    /// old site-local `fec0::/10`.
    Private,
    /// `169.254/16`, `fe80::/10`: the local link (cloud metadata services live here).
    LinkLocal,
    /// `0.0.0.0/8`, `::`: connecting there reaches this machine on Linux.
    Unspecified,
    /// `100.64/10` (RFC 6598): inside a carrier's or a cloud's network.
    SharedAddressSpace,
    /// `255.255.255.255`.
    Broadcast,
    /// Reserved for use inside a network: `192.0.0/24`, `198.18/15`, `240/4`.
    Reserved,
    /// NAT64's local-use prefix `64:ff9b:1::/48` (RFC 8215): a translator of this network.
    LocalTranslation,
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::LinkLocal => "link-local",
            Self::Unspecified => "unspecified",
            Self::SharedAddressSpace => "shared (carrier-grade NAT, 100.64.0.0/10)",
            Self::Broadcast => "broadcast",
            Self::Reserved => "reserved (192.0.0.0/24, 198.18.0.0/15 or 240.0.0.0/4)",
            Self::LocalTranslation => "local NAT64 (64:ff9b:1::/48)",
        })
    }
}

impl AddressClass {
    /// "a" or "an", as the class's name needs.
    fn article(self) -> &'static str {
        if self == Self::Unspecified {
            "an"
        } else {
            "a"
        }
    }

    /// The class of `address` when it is internal; `None` for an address on the internet.
    pub fn of(address: IpAddr) -> Option<AddressClass> {
        match address {
            IpAddr::V4(v4) => Self::of_v4(v4),
            IpAddr::V6(v6) => Self::of_v6(v6),
        }
    }

    fn of_v4(address: Ipv4Addr) -> Option<AddressClass> {
        let [a, b, c, _] = address.octets();
        Some(match (a, b, c) {
            (0, ..) => Self::Unspecified,
            (127, ..) => Self::Loopback,
            (10, ..) | (172, 16..=31, _) | (192, 168, _) => Self::Private,
            (169, 254, _) => Self::LinkLocal,
            (100, 64..=127, _) => Self::SharedAddressSpace,
            _ if address.is_broadcast() => Self::Broadcast,
            (192, 0, 0) | (198, 18..=19, _) | (240..=255, ..) => Self::Reserved,
            _ => return None,
        })
    }

    fn of_v6(address: Ipv6Addr) -> Option<AddressClass> {
        if address.is_unspecified() {
            return Some(Self::Unspecified);
        }
        if address.is_loopback() {
            return Some(Self::Loopback);
        }
        let segments = address.segments();
        let [.., high, low] = segments;
        let embedded = Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
        // An IPv4 address inside: mapped (::ffff:a.b.c.d), translated (::ffff:0:a.b.c.d),
        // compatible (::a.b.c.d) or NAT64 (64:ff9b::a.b.c.d). Each reaches that IPv4
        // address, so it is judged as one.
        if matches!(
            segments,
            [0, 0, 0, 0, 0, 0xffff, ..]
                | [0, 0, 0, 0, 0xffff, 0, ..]
                | [0, 0, 0, 0, 0, 0, ..]
                | [0x64, 0xff9b, 0, 0, 0, 0, ..]
        ) {
            return Self::of_v4(embedded);
        }
        // The local-use NAT64 prefix: judged by the address its /96 form would carry when
        // that is internal (a clearer message), refused in any case.
        if segments[..3] == [0x64, 0xff9b, 1] {
            return Some(Self::of_v4(embedded).unwrap_or(Self::LocalTranslation));
        }
        match segments[0] {
            0xfc00..=0xfdff | 0xfec0..=0xfeff => Some(Self::Private),
            0xfe80..=0xfebf => Some(Self::LinkLocal),
            _ => None,
        }
    }
}

/// Which targets a page or API may send to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetPolicy {
    /// Any address: the pages listen on loopback (only this machine's user reaches them), or
    /// `--allow-private-targets` was given; the command line's rule.
    #[default]
    AnyAddress,
    /// Addresses on the internet only: the pages are reachable from other hosts.
    PublicOnly,
}

impl TargetPolicy {
    /// The rule for pages bound to `listening`: an address that is not loopback (`0.0.0.0`,
    /// a LAN address) is reached by people other than the operator, so their targets must be
    /// public, unless `allow_private_targets` says the operator wants otherwise.
    pub fn for_listener(listening: SocketAddr, allow_private_targets: bool) -> TargetPolicy {
        let loopback = AddressClass::of(listening.ip()) == Some(AddressClass::Loopback);
        if loopback || allow_private_targets {
            TargetPolicy::AnyAddress
        } else {
            TargetPolicy::PublicOnly
        }
    }

    /// Whether `address` may be connected to under this policy.
    ///
    /// # Errors
    /// The address's class when the policy refuses it.
    pub fn allows(self, address: IpAddr) -> Result<(), AddressClass> {
        match (self, AddressClass::of(address)) {
            (TargetPolicy::PublicOnly, Some(class)) => Err(class),
            _ => Ok(()),
        }
    }
}

/// Which rule pages bound to `listening` follow, and why, in words for the start-up log (see
/// [`TargetGuard::for_pages`]).
pub fn pages_rule(listening: SocketAddr, allow_private_targets: bool) -> &'static str {
    let beyond_loopback = TargetPolicy::for_listener(listening, false) == TargetPolicy::PublicOnly;
    match (beyond_loopback, allow_private_targets) {
        (_, true) => {
            "--allow-private-targets: targets may be internal addresses (loopback, private, \
             link-local) too"
        }
        (true, false) => {
            "reachable from other hosts: targets on loopback, private, link-local or other \
             internal addresses are refused (--allow-private-targets allows them)"
        }
        (false, false) => {
            "on loopback, reachable from this machine only: targets may be any address"
        }
    }
}

/// Why a target was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    /// The host is, or resolves to, an internal address.
    Internal {
        /// The host as given (a name or an address).
        host: String,
        /// The refused address.
        address: IpAddr,
        /// Why it is internal.
        class: AddressClass,
    },
    /// The host does not resolve (so it cannot be checked).
    Unresolved {
        /// The host as given.
        host: String,
        /// What the resolver said.
        cause: String,
    },
}

impl TargetError {
    /// What was refused, without why the rule holds: `10.0.0.5 is a private address`,
    /// `name resolves to 127.0.0.1, a loopback address`, or that the name does not resolve.
    pub fn refused(&self) -> String {
        match self {
            Self::Internal {
                host,
                address,
                class,
            } => {
                let article = class.article();
                if host.parse::<IpAddr>().ok() == Some(*address) {
                    format!("{address} is {article} {class} address")
                } else {
                    format!("{host} resolves to {address}, {article} {class} address")
                }
            }
            Self::Unresolved { .. } => self.to_string(),
        }
    }
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Internal { .. } => {
                write!(
                    f,
                    "{}: these pages are reachable from other hosts, so they send nothing to \
                     internal addresses (start them with --allow-private-targets to allow it)",
                    self.refused()
                )
            }
            Self::Unresolved { host, cause } => {
                write!(
                    f,
                    "{host} does not resolve ({cause}), so it cannot be checked"
                )
            }
        }
    }
}

impl std::error::Error for TargetError {}

/// The future of a resolution.
pub type Resolving<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>>;

/// Turns a host name into addresses. The guard takes it as a value so that tests answer
/// names themselves (a name that maps to `10.0.0.5`, or to a public address first and to
/// `127.0.0.1` next) without asking a DNS server.
pub trait Resolve: Send + Sync {
    /// The addresses of `host` (a name, never an address literal) with `port`.
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> Resolving<'a>;
}

/// The system's resolver (`getaddrinfo`, through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> Resolving<'a> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// A policy and the resolver it checks names with: what an HTTP client connects through.
#[derive(Clone)]
pub struct TargetGuard {
    policy: TargetPolicy,
    resolver: Arc<dyn Resolve>,
}

impl fmt::Debug for TargetGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetGuard")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Default for TargetGuard {
    /// Any address, through the system resolver: the command line's rule.
    fn default() -> Self {
        TargetGuard::new(TargetPolicy::AnyAddress)
    }
}

impl TargetGuard {
    /// `policy` with the system resolver.
    pub fn new(policy: TargetPolicy) -> TargetGuard {
        TargetGuard {
            policy,
            resolver: Arc::new(SystemResolver),
        }
    }

    /// The guard of pages bound to `listening` (see [`TargetPolicy::for_listener`]).
    pub fn for_listener(listening: SocketAddr, allow_private_targets: bool) -> TargetGuard {
        TargetGuard::new(TargetPolicy::for_listener(listening, allow_private_targets))
    }

    /// The guard of `what` (the admin pages, the inspector) bound to `listening`, as
    /// [`TargetGuard::for_listener`] gives it, with one line in the log saying which rule
    /// holds and why ([`pages_rule`]): what both programs do once they are bound.
    pub fn for_pages(
        what: &str,
        listening: SocketAddr,
        allow_private_targets: bool,
    ) -> TargetGuard {
        let rule = pages_rule(listening, allow_private_targets);
        tracing::info!(address = %listening, "{what} on {listening}: {rule}");
        TargetGuard::for_listener(listening, allow_private_targets)
    }

    /// The same policy, resolving names with `resolver`.
    #[must_use]
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolve>) -> TargetGuard {
        self.resolver = resolver;
        self
    }

    /// The policy.
    pub fn policy(&self) -> TargetPolicy {
        self.policy
    }

    /// The same guard (its resolver), under `policy` where that is the stricter: what the
    /// connect for a target that carries a rule of its own goes through (a sender webhook
    /// whose Target URL was given through pages reachable from other hosts).
    #[must_use]
    pub fn at_least(&self, policy: TargetPolicy) -> TargetGuard {
        let mut guard = self.clone();
        if policy == TargetPolicy::PublicOnly {
            guard.policy = policy;
        }
        guard
    }

    /// The addresses to connect to for `host` and `port`: an address literal (`10.0.0.5`,
    /// `[::1]`) as it is, a name resolved once; every address is checked, and one internal
    /// address refuses the host (a client could pick it). Connect to exactly these.
    ///
    /// # Errors
    /// [`TargetError::Internal`] under [`TargetPolicy::PublicOnly`]; [`TargetError::Unresolved`]
    /// when the name has no address.
    pub async fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, TargetError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addresses = match bare.parse::<IpAddr>() {
            Ok(address) => vec![SocketAddr::new(address, port)],
            Err(_) => {
                let unresolved = |cause: String| TargetError::Unresolved {
                    host: bare.to_owned(),
                    cause,
                };
                let found = self
                    .resolver
                    .resolve(bare, port)
                    .await
                    .map_err(|error| unresolved(error.to_string()))?;
                if found.is_empty() {
                    return Err(unresolved("no address".to_owned()));
                }
                found
            }
        };
        for address in &addresses {
            self.policy
                .allows(address.ip())
                .map_err(|class| TargetError::Internal {
                    host: bare.to_owned(),
                    address: address.ip(),
                    class,
                })?;
        }
        Ok(addresses)
    }

    /// Checks the host and port of `uri` (`http` or `https`; the port its scheme implies when
    /// none is written) as [`TargetGuard::check`] does: the one step from a URL to its check,
    /// for the sender's Target URLs and the inspector's Send again alike.
    ///
    /// # Errors
    /// As [`TargetGuard::addresses`].
    pub async fn check_uri(&self, uri: &http::Uri) -> Result<(), TargetError> {
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        self.check(uri.host().unwrap_or_default(), port).await
    }

    /// Checks a target before it is saved or sent to (the pages' and API's field check):
    /// under [`TargetPolicy::PublicOnly`] its host is resolved and checked as
    /// [`TargetGuard::addresses`] does; under [`TargetPolicy::AnyAddress`] nothing is looked up.
    /// The connect re-checks whatever this found, so a later DNS answer cannot slip past.
    ///
    /// # Errors
    /// As [`TargetGuard::addresses`].
    pub async fn check(&self, host: &str, port: u16) -> Result<(), TargetError> {
        if self.policy == TargetPolicy::AnyAddress {
            return Ok(());
        }
        self.addresses(host, port).await.map(drop)
    }
}

/// A [`Resolve`] that answers from a table, for tests (feature `test-resolver`, never part of
/// a program): each name has a list of answers, given in turn (the last one again once they
/// run out), so a test can make a name change its address between a check and the connect
/// that follows. A name not in the table does not resolve. It never asks a DNS server.
#[cfg(any(test, feature = "test-resolver"))]
#[derive(Debug, Default)]
pub struct TableResolver {
    answers: std::sync::Mutex<std::collections::HashMap<String, Vec<Vec<IpAddr>>>>,
}

#[cfg(any(test, feature = "test-resolver"))]
impl TableResolver {
    /// Answers `name` with `answers`, one per lookup.
    #[must_use]
    pub fn with(self, name: &str, answers: Vec<Vec<IpAddr>>) -> TableResolver {
        self.lock().insert(name.to_owned(), answers);
        self
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Vec<Vec<IpAddr>>>> {
        // A std Mutex held for a lookup in a map, never across an await.
        self.answers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(any(test, feature = "test-resolver"))]
impl Resolve for TableResolver {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> Resolving<'a> {
        let answer = {
            let mut table = self.lock();
            match table.get_mut(host) {
                Some(answers) if answers.len() > 1 => Some(answers.remove(0)),
                Some(answers) => answers.first().cloned(),
                None => None,
            }
        };
        Box::pin(async move {
            let answer = answer.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{host} is not in the table"),
                )
            })?;
            Ok(answer
                .into_iter()
                .map(|address| SocketAddr::new(address, port))
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_classified_as_internal_or_not() {
        use AddressClass::*;
        let check = |text: &str, expected: Option<AddressClass>| {
            let address: IpAddr = text.parse().expect(text);
            assert_eq!(AddressClass::of(address), expected, "{text}");
        };
        // IPv4
        check("127.0.0.1", Some(Loopback));
        check("127.255.255.254", Some(Loopback));
        check("10.0.0.5", Some(Private));
        check("172.16.0.1", Some(Private));
        check("172.31.255.255", Some(Private));
        check("172.15.255.255", None);
        check("172.32.0.0", None);
        check("192.168.1.1", Some(Private));
        check("192.169.0.1", None);
        check("169.254.169.254", Some(LinkLocal));
        check("0.0.0.0", Some(Unspecified));
        check("0.1.2.3", Some(Unspecified));
        check("100.64.0.1", Some(SharedAddressSpace));
        check("100.127.255.255", Some(SharedAddressSpace));
        check("100.63.255.255", None);
        check("100.128.0.0", None);
        check("255.255.255.255", Some(Broadcast));
        check("192.0.0.1", Some(Reserved));
        check("192.0.0.255", Some(Reserved));
        check("192.0.1.1", None);
        check("198.18.0.1", Some(Reserved));
        check("198.19.255.255", Some(Reserved));
        check("198.17.255.255", None);
        check("198.20.0.0", None);
        check("240.0.0.1", Some(Reserved));
        check("255.255.255.254", Some(Reserved));
        check("239.255.255.255", None);
        check("8.8.8.8", None);
        check("93.184.216.34", None);
        check("203.0.113.7", None);
        // IPv6
        check("::1", Some(Loopback));
        check("::", Some(Unspecified));
        check("fc00::1", Some(Private));
        check("fd12:3456::1", Some(Private));
        check("fec0::1", Some(Private));
        check("fe80::1", Some(LinkLocal));
        check("febf::1", Some(LinkLocal));
        check("fe7f::1", None);
        check("2001:db8::1", None);
        check("2606:4700::1111", None);
        // IPv4 inside IPv6: judged by the IPv4 address.
        check("::ffff:127.0.0.1", Some(Loopback));
        check("::ffff:10.0.0.5", Some(Private));
        check("::ffff:169.254.169.254", Some(LinkLocal));
        check("::ffff:0.0.0.0", Some(Unspecified));
        check("::ffff:8.8.8.8", None);
        check("::127.0.0.1", Some(Loopback));
        check("64:ff9b::a00:5", Some(Private));
        check("64:ff9b::a9fe:a9fe", Some(LinkLocal));
        check("64:ff9b::c612:1", Some(Reserved));
        check("64:ff9b::808:808", None);
        check("::ffff:0:7f00:1", Some(Loopback));
        check("::ffff:0:a9fe:a9fe", Some(LinkLocal));
        check("::ffff:0:808:808", None);
        // The local-use NAT64 prefix: by what it carries when internal, else refused anyway.
        check("64:ff9b:1::7f00:1", Some(Loopback));
        check("64:ff9b:1::a00:5", Some(Private));
        check("64:ff9b:1::808:808", Some(LocalTranslation));
        check("64:ff9b:1:ffff:1:2:808:808", Some(LocalTranslation));
        check("64:ff9b:2::808:808", None);
        check("2002:7f00:1::", None);
    }

    #[test]
    fn the_rule_follows_the_listening_address() {
        let check = |listening: &str, allow: bool, expected: TargetPolicy| {
            let address: SocketAddr = listening.parse().expect(listening);
            assert_eq!(
                TargetPolicy::for_listener(address, allow),
                expected,
                "{listening} {allow}"
            );
        };
        check("127.0.0.1:8082", false, TargetPolicy::AnyAddress);
        check("127.0.0.2:8082", false, TargetPolicy::AnyAddress);
        check("[::1]:8082", false, TargetPolicy::AnyAddress);
        check("0.0.0.0:8082", false, TargetPolicy::PublicOnly);
        check("[::]:8082", false, TargetPolicy::PublicOnly);
        check("192.168.1.20:8082", false, TargetPolicy::PublicOnly);
        check("203.0.113.7:8082", false, TargetPolicy::PublicOnly);
        check("0.0.0.0:8082", true, TargetPolicy::AnyAddress);
        check("192.168.1.20:8082", true, TargetPolicy::AnyAddress);
    }

    #[test]
    fn the_start_up_log_says_which_rule_holds_and_why() {
        let rule =
            |listening: &str, allow: bool| pages_rule(listening.parse().expect(listening), allow);
        assert!(rule("0.0.0.0:8081", false).starts_with("reachable from other hosts"));
        assert!(rule("[::]:8081", false).contains("are refused"));
        assert!(rule("0.0.0.0:8081", true).starts_with("--allow-private-targets"));
        assert!(rule("127.0.0.1:8081", true).starts_with("--allow-private-targets"));
        assert!(rule("127.0.0.1:8081", false).starts_with("on loopback"));
        assert!(rule("[::1]:8081", false).ends_with("any address"));
    }

    #[tokio::test]
    async fn the_guard_checks_every_resolved_address_and_literals_as_they_are() {
        let public: IpAddr = "203.0.113.7".parse().expect("address");
        let private: IpAddr = "10.0.0.5".parse().expect("address");
        let loopback: IpAddr = "127.0.0.1".parse().expect("address");
        let table = TableResolver::default()
            .with("public.test", vec![vec![public]])
            .with("internal.test", vec![vec![private]])
            .with("mixed.test", vec![vec![public, loopback]])
            .with("rebinding.test", vec![vec![public], vec![loopback]]);
        let guard = TargetGuard::new(TargetPolicy::PublicOnly).with_resolver(Arc::new(table));
        assert_eq!(
            guard.addresses("public.test", 80).await,
            Ok(vec![SocketAddr::new(public, 80)])
        );
        let refused = guard.addresses("internal.test", 80).await;
        assert_eq!(
            refused,
            Err(TargetError::Internal {
                host: "internal.test".into(),
                address: private,
                class: AddressClass::Private
            })
        );
        let message = refused.expect_err("refused").to_string();
        assert!(
            message.starts_with("internal.test resolves to 10.0.0.5, a private address")
                && message.contains("--allow-private-targets"),
            "{message}"
        );
        assert!(matches!(
            guard.addresses("mixed.test", 80).await,
            Err(TargetError::Internal {
                class: AddressClass::Loopback,
                ..
            })
        ));
        // A name that changes its answer: each lookup is checked on its own.
        assert!(guard.check("rebinding.test", 80).await.is_ok());
        assert!(matches!(
            guard.addresses("rebinding.test", 80).await,
            Err(TargetError::Internal {
                class: AddressClass::Loopback,
                ..
            })
        ));
        // Literals are not looked up.
        let literal = guard.addresses("[::1]", 1).await.expect_err("loopback");
        assert!(
            literal
                .to_string()
                .starts_with("::1 is a loopback address:"),
            "{literal}"
        );
        assert!(guard.addresses("169.254.169.254", 80).await.is_err());
        assert!(matches!(
            guard.addresses("nowhere.test", 80).await,
            Err(TargetError::Unresolved { .. })
        ));
        // A URL's host and port (the scheme's when none is written), as the pages check them.
        let uri = |text: &str| text.parse::<http::Uri>().expect(text);
        assert!(guard
            .check_uri(&uri("https://public.test/hook"))
            .await
            .is_ok());
        assert!(matches!(
            guard
                .check_uri(&uri("http://[::ffff:0:a9fe:a9fe]:8080/x"))
                .await,
            Err(TargetError::Internal {
                class: AddressClass::LinkLocal,
                ..
            })
        ));
        assert!(matches!(
            guard.check_uri(&uri("http://[64:ff9b:1::7f00:1]/")).await,
            Err(TargetError::Internal {
                class: AddressClass::Loopback,
                ..
            })
        ));
        // Any address: the literal and the name pass, a check looks nothing up.
        let open = TargetGuard::new(TargetPolicy::AnyAddress)
            .with_resolver(Arc::new(TableResolver::default()));
        assert!(open.addresses("127.0.0.1", 6379).await.is_ok());
        assert!(open.check("nowhere.test", 80).await.is_ok());
    }
}
