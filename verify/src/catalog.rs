//! The event catalogue of SPEC section 1: every event name, its delivery class and the fields of
//! its `data`.

/// How Learning Manager delivers an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventClass {
    /// One event per request, sent as it happens.
    RealTime,
    /// Several events per request, sent on a schedule.
    Batch,
}

/// Which kind of learning object an event is about; decides `loType` and the `loId` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoFamily {
    /// `course`.
    Course,
    /// `learningProgram` (a learning path).
    LearningProgram,
    /// `certification`.
    Certification,
    /// Any of the three (learning-object admin events, progress).
    Any,
    /// No learning object in `data` (user-group responses).
    None,
}

/// A field of an event's `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `userId`: integer.
    UserId,
    /// `loId`: `"<loType>:<n>"`.
    LoId,
    /// `loInstanceId`: `"<loId>_<n>"`.
    LoInstanceId,
    /// `loType`: `course`, `learningProgram` or `certification`.
    LoType,
    /// `enrollmentSource`: `SELF_ENROLL`, `ADMIN_ENROLL`, `MANAGER_ENROLL`, …
    EnrollmentSource,
    /// `dateEnrolled`: a date.
    DateEnrolled,
    /// `dateCompleted`: a date.
    DateCompleted,
    /// `hasPassed`: boolean.
    HasPassed,
    /// `dateStarted`: a date.
    DateStarted,
    /// `progressPercent`: 0 to 100.
    ProgressPercent,
    /// `enrollmentCount`: integer.
    EnrollmentCount,
    /// `waitlistCount`: integer.
    WaitlistCount,
    /// `seatLimit`: integer.
    SeatLimit,
    /// `status`: `SUCCESS`, …
    Status,
    /// `request`: the original request body, echoed.
    Request,
}

impl Field {
    /// The field's JSON name.
    pub fn json_name(self) -> &'static str {
        match self {
            Self::UserId => "userId",
            Self::LoId => "loId",
            Self::LoInstanceId => "loInstanceId",
            Self::LoType => "loType",
            Self::EnrollmentSource => "enrollmentSource",
            Self::DateEnrolled => "dateEnrolled",
            Self::DateCompleted => "dateCompleted",
            Self::HasPassed => "hasPassed",
            Self::DateStarted => "dateStarted",
            Self::ProgressPercent => "progressPercent",
            Self::EnrollmentCount => "enrollmentCount",
            Self::WaitlistCount => "waitlistCount",
            Self::SeatLimit => "seatLimit",
            Self::Status => "status",
            Self::Request => "request",
        }
    }
}

/// One catalogue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventKind {
    /// The `eventName`.
    pub name: &'static str,
    /// Real-time or batch.
    pub class: EventClass,
    /// The kind of learning object the event is about.
    pub family: LoFamily,
    /// The fields of `data`, in the order the sender writes them.
    pub fields: &'static [Field],
}

use Field::*;

const ENROLLMENT: &[Field] = &[
    UserId,
    LoId,
    LoInstanceId,
    LoType,
    EnrollmentSource,
    DateEnrolled,
];
const COMPLETED: &[Field] = &[
    UserId,
    LoId,
    LoInstanceId,
    LoType,
    EnrollmentSource,
    DateCompleted,
    HasPassed,
];
// Certifications are earned, not passed: no `hasPassed`.
const CERTIFICATION_COMPLETED: &[Field] = &[
    UserId,
    LoId,
    LoInstanceId,
    LoType,
    EnrollmentSource,
    DateCompleted,
];
const UNENROLLMENT: &[Field] = &[UserId, LoId, LoInstanceId, LoType, EnrollmentSource];
const PROGRESS: &[Field] = &[
    UserId,
    LoId,
    LoInstanceId,
    LoType,
    DateStarted,
    ProgressPercent,
];
const CI_STATS: &[Field] = &[LoInstanceId, EnrollmentCount, WaitlistCount, SeatLimit];
const LEARNING_OBJECT: &[Field] = &[LoId, LoType];
const LEARNING_OBJECT_INSTANCE: &[Field] = &[LoInstanceId, LoId, LoType];
const USER_GROUP_RESPONSE: &[Field] = &[Status, Request];

const fn kind(
    name: &'static str,
    class: EventClass,
    family: LoFamily,
    fields: &'static [Field],
) -> EventKind {
    EventKind {
        name,
        class,
        family,
        fields,
    }
}

use EventClass::{Batch, RealTime};
use LoFamily::{Any, Certification, Course, LearningProgram};

/// Every event name of SPEC section 1, real-time first, in the order the SPEC lists them.
pub const CATALOG: &[EventKind] = &[
    kind("COURSE_ENROLLMENT", RealTime, Course, ENROLLMENT),
    kind("COURSE_COMPLETED", RealTime, Course, COMPLETED),
    kind("COURSE_UNENROLLMENT", RealTime, Course, UNENROLLMENT),
    kind(
        "LEARNING_PATH_ENROLLMENT",
        RealTime,
        LearningProgram,
        ENROLLMENT,
    ),
    kind(
        "LEARNING_PATH_COMPLETED",
        RealTime,
        LearningProgram,
        COMPLETED,
    ),
    kind(
        "LEARNING_PATH_UNENROLLMENT",
        RealTime,
        LearningProgram,
        UNENROLLMENT,
    ),
    kind(
        "CERTIFICATION_ENROLLMENT",
        RealTime,
        Certification,
        ENROLLMENT,
    ),
    kind(
        "CERTIFICATION_COMPLETED",
        RealTime,
        Certification,
        CERTIFICATION_COMPLETED,
    ),
    kind(
        "CERTIFICATION_UNENROLLMENT",
        RealTime,
        Certification,
        UNENROLLMENT,
    ),
    kind(
        "LEARNING_PATH_COMPLETION_ROLLBACK",
        RealTime,
        LearningProgram,
        ENROLLMENT,
    ),
    kind("CI_STATS", RealTime, Course, CI_STATS),
    kind("LEARNING_OBJECT_DRAFT", RealTime, Any, LEARNING_OBJECT),
    kind(
        "LEARNING_OBJECT_MODIFICATION",
        RealTime,
        Any,
        LEARNING_OBJECT,
    ),
    kind("LEARNING_OBJECT_DELETION", RealTime, Any, LEARNING_OBJECT),
    kind(
        "LEARNING_OBJECT_INSTANCE_MODIFICATION",
        RealTime,
        Any,
        LEARNING_OBJECT_INSTANCE,
    ),
    kind(
        "LEARNING_OBJECT_INSTANCE_DELETION",
        RealTime,
        Any,
        LEARNING_OBJECT_INSTANCE,
    ),
    kind(
        "RESPONSE:ASYNCAPI_USERGROUP_USER_ADDED",
        RealTime,
        LoFamily::None,
        USER_GROUP_RESPONSE,
    ),
    kind(
        "RESPONSE:ASYNCAPI_USERGROUP_USER_REMOVED",
        RealTime,
        LoFamily::None,
        USER_GROUP_RESPONSE,
    ),
    kind("COURSE_ENROLLMENT_BATCH", Batch, Course, ENROLLMENT),
    kind("COURSE_COMPLETED_BATCH", Batch, Course, COMPLETED),
    kind("COURSE_UNENROLLMENT_BATCH", Batch, Course, UNENROLLMENT),
    kind(
        "LEARNING_PATH_ENROLLMENT_BATCH",
        Batch,
        LearningProgram,
        ENROLLMENT,
    ),
    kind(
        "LEARNING_PATH_COMPLETED_BATCH",
        Batch,
        LearningProgram,
        COMPLETED,
    ),
    kind(
        "LEARNING_PATH_UNENROLLMENT_BATCH",
        Batch,
        LearningProgram,
        UNENROLLMENT,
    ),
    kind(
        "CERTIFICATION_ENROLLMENT_BATCH",
        Batch,
        Certification,
        ENROLLMENT,
    ),
    kind(
        "CERTIFICATION_COMPLETED_BATCH",
        Batch,
        Certification,
        CERTIFICATION_COMPLETED,
    ),
    kind(
        "CERTIFICATION_UNENROLLMENT_BATCH",
        Batch,
        Certification,
        UNENROLLMENT,
    ),
    kind(
        "LEARNING_PATH_COMPLETION_ROLLBACK_BATCH",
        Batch,
        LearningProgram,
        ENROLLMENT,
    ),
    kind(
        "LEARNING_OBJECT_MODIFICATION_BATCH",
        Batch,
        Any,
        LEARNING_OBJECT,
    ),
    kind(
        "LEARNING_OBJECT_INSTANCE_MODIFICATION_BATCH",
        Batch,
        Any,
        LEARNING_OBJECT_INSTANCE,
    ),
    kind("LEARNER_PROGRESS", Batch, Any, PROGRESS),
];

/// The catalogue entry of `name`, or `None` when the catalogue does not know it.
pub fn lookup(name: &str) -> Option<&'static EventKind> {
    CATALOG.iter().find(|kind| kind.name == name)
}

/// The `loType` values readers accept: the three documented and the older `learning_program`.
pub const LO_TYPES: &[&str] = &[
    "course",
    "learningProgram",
    "certification",
    "learning_program",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_matches_the_spec_counts_and_classes() {
        let real_time = CATALOG.iter().filter(|k| k.class == RealTime).count();
        let batch = CATALOG.iter().filter(|k| k.class == Batch).count();
        assert_eq!((real_time, batch), (18, 13));
        for kind in CATALOG {
            let batch_name = kind.name.ends_with("_BATCH") || kind.name == "LEARNER_PROGRESS";
            assert_eq!(kind.class == Batch, batch_name, "{}", kind.name);
            assert_eq!(lookup(kind.name), Some(kind));
        }
        assert_eq!(
            lookup("COURSE_ENROLLMENT_BATCH").map(|k| k.fields),
            Some(ENROLLMENT)
        );
        assert!(
            lookup("course_enrollment").is_none(),
            "names are case-sensitive"
        );
    }

    #[test]
    fn certifications_have_no_has_passed() {
        for kind in CATALOG
            .iter()
            .filter(|k| k.name.starts_with("CERTIFICATION_COMPLETED"))
        {
            assert!(!kind.fields.contains(&HasPassed), "{}", kind.name);
        }
        let course = lookup("COURSE_COMPLETED").map(|k| k.fields);
        assert!(course.is_some_and(|fields| fields.contains(&HasPassed)));
    }
}
