//! Which forwarding targets a stored request goes to (`--forward-to [EVENTS=]URL`): each
//! target's event selection, and the routing of a request by the names of its new events.
//!
//! Its own module, below both the store (which queues one job per matching target in the
//! request's transaction) and the forwarder (which parses the flags), so that neither imports
//! the other for it.
//!
//! Rules, written once here for both stores:
//! - `EVENTS` is a comma-separated list of event names or globs; `*` stands for any run of
//!   characters (none included), every other character stands for itself, case counts
//!   (`COURSE_*` matches `COURSE_COMPLETED`, not `course_completed`); `*` alone, or no
//!   `EVENTS=` at all, matches every name;
//! - a request goes to a target when at least one of its NEW events matches (duplicates went
//!   with the request that first stored them), and then goes whole, byte for byte: a batch is
//!   never cut.

use std::fmt;

/// Most targets one receiver forwards to: the store routes a request with one bit per target
/// (PostgreSQL gets a 64-bit mask per event), and each target is a worker and a lease.
pub const MAX_TARGETS: usize = 32;

/// One item of an `EVENTS` list: an exact name, or a glob with `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    /// The text between the `*`s, in order; an exact name is one part and no star.
    parts: Vec<String>,
    /// Whether the text has at least one `*` (`parts.len() - 1` of them, consecutive ones
    /// counting once).
    glob: bool,
    /// As written.
    text: String,
}

impl Pattern {
    fn parse(text: &str) -> Result<Pattern, String> {
        if text.is_empty() {
            return Err("an empty event name in the list".to_owned());
        }
        if let Some(bad) = text.chars().find(|c| {
            !(c.is_ascii_alphanumeric() || *c == '_' || *c == '*' || *c == '.' || *c == '-')
        }) {
            return Err(format!(
                "{text:?}: event names hold letters, digits, `_`, `.` and `-`, and `*` for any \
                 run of characters (not {bad:?})"
            ));
        }
        Ok(Pattern {
            parts: text.split('*').map(str::to_owned).collect(),
            glob: text.contains('*'),
            text: text.to_owned(),
        })
    }

    fn matches(&self, name: &str) -> bool {
        if !self.glob {
            return self.parts.first().is_some_and(|exact| exact == name);
        }
        // First part anchored at the start, last at the end, the middle ones found in order.
        let (Some(first), Some(last)) = (self.parts.first(), self.parts.last()) else {
            return false;
        };
        if name.len() < first.len() + last.len()
            || !name.starts_with(first.as_str())
            || !name.ends_with(last.as_str())
        {
            return false;
        }
        let mut rest = &name[first.len()..name.len() - last.len()];
        for middle in &self.parts[1..self.parts.len() - 1] {
            match rest.find(middle.as_str()) {
                Some(at) => rest = &rest[at + middle.len()..],
                None => return false,
            }
        }
        true
    }
}

/// The events a target takes: every one, or those matching a list of names and globs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventSelector {
    /// Empty: every event.
    patterns: Vec<Pattern>,
}

impl EventSelector {
    /// Every event (`--forward-to URL`, or `*=URL`).
    pub fn all() -> EventSelector {
        EventSelector::default()
    }

    /// Reads an `EVENTS` list: names or globs separated by commas (spaces around them are
    /// allowed).
    ///
    /// # Errors
    /// An empty list or item, or a character no event name holds.
    pub fn parse(list: &str) -> Result<EventSelector, String> {
        let mut patterns = Vec::new();
        for item in list.split(',') {
            let pattern = Pattern::parse(item.trim())?;
            if pattern.text == "*" {
                return Ok(EventSelector::all());
            }
            if !patterns.contains(&pattern) {
                patterns.push(pattern);
            }
        }
        Ok(EventSelector { patterns })
    }

    /// Whether this takes every event.
    pub fn is_all(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `event_name` is taken.
    pub fn matches(&self, event_name: &str) -> bool {
        self.is_all()
            || self
                .patterns
                .iter()
                .any(|pattern| pattern.matches(event_name))
    }

    /// The items that match no name of the catalogue, for a warning at start (a typo routes
    /// nothing; a name Learning Manager added after this build is still allowed).
    pub fn outside_catalogue(&self) -> Vec<&str> {
        self.patterns
            .iter()
            .filter(|pattern| {
                !verify::catalog::CATALOG
                    .iter()
                    .any(|event| pattern.matches(event.name))
            })
            .map(|pattern| pattern.text.as_str())
            .collect()
    }
}

impl fmt::Display for EventSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_all() {
            return f.write_str("*");
        }
        let texts: Vec<&str> = self.patterns.iter().map(|p| p.text.as_str()).collect();
        f.write_str(&texts.join(","))
    }
}

/// One target as the store routes to it: its name in the store (the URL as given) and the
/// events it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The target's URL, as it is kept in each job's `target` column.
    pub target: String,
    /// The events it takes.
    pub events: EventSelector,
}

/// The targets of a receiver, in the order given; empty when forwarding is off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    /// Routes to `routes` (at most [`MAX_TARGETS`]; the command line refuses more).
    pub fn new(routes: Vec<Route>) -> Routes {
        debug_assert!(routes.len() <= MAX_TARGETS);
        Routes { routes }
    }

    /// Whether forwarding is on.
    pub fn is_on(&self) -> bool {
        !self.routes.is_empty()
    }

    /// The targets, in the order given.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The bit mask of the targets that take an event named `event_name` (bit `i` for
    /// target `i`).
    pub fn mask_of(&self, event_name: &str) -> i64 {
        self.routes
            .iter()
            .enumerate()
            .filter(|(_, route)| route.events.matches(event_name))
            .fold(0, |mask, (index, _)| mask | (1_i64 << index))
    }

    /// The targets a request goes to, given the names of its new events.
    pub fn targets_for<'n>(&self, new_event_names: impl IntoIterator<Item = &'n str>) -> Vec<&str> {
        let mask = new_event_names
            .into_iter()
            .fold(0, |mask, name| mask | self.mask_of(name));
        self.targets_of_mask(mask)
    }

    /// The targets whose bits are set in `mask`.
    pub fn targets_of_mask(&self, mask: i64) -> Vec<&str> {
        self.routes
            .iter()
            .enumerate()
            .filter(|(index, _)| mask & (1_i64 << index) != 0)
            .map(|(_, route)| route.target.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_globs_match_as_documented() {
        let check = |list: &str, name: &str, expected: bool| {
            let selector = EventSelector::parse(list).unwrap();
            assert_eq!(selector.matches(name), expected, "{list} ~ {name}");
        };
        check("COURSE_ENROLLMENT", "COURSE_ENROLLMENT", true);
        check("COURSE_ENROLLMENT", "COURSE_ENROLLMENT_BATCH", false);
        check("COURSE_ENROLLMENT", "course_enrollment", false);
        check("COURSE_*", "COURSE_COMPLETED", true);
        check("COURSE_*", "COURSE_", true);
        check("COURSE_*", "LEARNING_PATH_COMPLETED", false);
        check("*_COMPLETED", "COURSE_COMPLETED", true);
        check("*_COMPLETED", "COURSE_COMPLETED_BATCH", false);
        check("*_COMPLETED*", "COURSE_COMPLETED_BATCH", true);
        check("C*_*_B*", "COURSE_COMPLETED_BATCH", true);
        check("C*X*", "COURSE_COMPLETED", false);
        check("*_ENROLLMENT", "COURSE_UNENROLLMENT", false);
        check("*_ENROLLMENT", "LEARNING_PATH_ENROLLMENT", true);
        check("A*A", "A", false);
        check("A*A", "AA", true);
        check("**", "ANYTHING", true);
        check("*", "ANYTHING", true);
        check("LEARNER_PROGRESS, COURSE_*", "COURSE_COMPLETED", true);
        check("LEARNER_PROGRESS, COURSE_*", "LEARNER_PROGRESS", true);
        check("LEARNER_PROGRESS, COURSE_*", "SKILL_ACHIEVED", false);
    }

    #[test]
    fn bad_lists_are_refused_with_the_reason() {
        for (list, said) in [
            ("", "empty"),
            ("A,,B", "empty"),
            ("COURSE COMPLETED", "letters, digits"),
            ("http://x", "letters, digits"),
        ] {
            let error = EventSelector::parse(list).unwrap_err();
            assert!(error.contains(said), "{list}: {error}");
        }
        assert!(EventSelector::parse("A,*").unwrap().is_all());
        assert_eq!(EventSelector::parse("B, A,B").unwrap().to_string(), "B,A");
    }

    #[test]
    fn a_request_goes_to_every_target_one_of_its_new_events_matches() {
        let routes = Routes::new(vec![
            Route {
                target: "http://crm/".to_owned(),
                events: EventSelector::parse("COURSE_ENROLLMENT,COURSE_COMPLETED").unwrap(),
            },
            Route {
                target: "http://reporting/".to_owned(),
                events: EventSelector::parse("LEARNER_*").unwrap(),
            },
            Route {
                target: "http://archive/".to_owned(),
                events: EventSelector::all(),
            },
        ]);
        assert_eq!(
            routes.targets_for(["COURSE_COMPLETED", "LEARNER_PROGRESS"]),
            ["http://crm/", "http://reporting/", "http://archive/"]
        );
        assert_eq!(routes.targets_for(["SKILL_ACHIEVED"]), ["http://archive/"]);
        assert_eq!(routes.mask_of("LEARNER_PROGRESS"), 0b110);
        assert!(routes.targets_for([]).is_empty());
    }

    #[test]
    fn items_outside_the_catalogue_are_named() {
        let selector = EventSelector::parse("COURSE_ENROLMENT,COURSE_*,NO_SUCH_*").unwrap();
        assert_eq!(
            selector.outside_catalogue(),
            ["COURSE_ENROLMENT", "NO_SUCH_*"]
        );
        assert!(EventSelector::all().outside_catalogue().is_empty());
    }
}
