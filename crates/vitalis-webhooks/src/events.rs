//! The event catalog and subscription patterns (`users:created`, `users:*`).

use vitalis_core::ValidationErrors;

/// Every event name this server can emit or will emit as resource families land, in the
/// reference API's catalog. Subscribing to a name here is valid even before it fires.
pub const EVENT_CATALOG: &[&str] = &[
    "users:created",
    "users:updated",
    "users:deleted",
    "users.data_syncs:updated",
    "daily_records:created",
    "daily_records:updated",
    "daily_records:deleted",
    "facts:created",
    "facts:updated",
    "facts:deleted",
    "ai_summaries:created",
    "ai_summaries:updated",
    "ai_summaries:deleted",
    "custom_records:created",
    "custom_records:updated",
    "custom_records:deleted",
    "workouts:created",
    "workouts:updated",
    "workouts:deleted",
    "lab_tests:created",
    "lab_tests:updated",
    "lab_tests:deleted",
    "meals:created",
    "meals:updated",
    "meals:deleted",
];

/// The event sent by "send a test event"; delivered whatever the subscription.
pub const TEST_EVENT: &str = "webhooks:test";

/// Checks a subscription list: known names or `family:*` of a known family; returns the
/// normalised space-separated form.
pub fn validate_subscriptions(events: &[String]) -> Result<String, ValidationErrors> {
    if events.is_empty() {
        return Err(ValidationErrors::single("events", "must list at least one event name or family:* pattern"));
    }
    let mut errors = ValidationErrors::default();
    let mut normalised: Vec<&str> = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let known = match event.strip_suffix(":*") {
            Some(family) => EVENT_CATALOG.iter().any(|name| name.rsplit_once(':').is_some_and(|(f, _)| f == family)),
            None => EVENT_CATALOG.contains(&event.as_str()),
        };
        if known {
            normalised.push(event);
        } else {
            errors.push(format!("events[{i}]"), format!("`{event}` is not a known event name or family:* pattern"));
        }
    }
    normalised.sort_unstable();
    normalised.dedup();
    errors.into_result(normalised.join(" "))
}

/// Whether `subscriptions` (space-separated) cover `event`.
pub fn matches(subscriptions: &str, event: &str) -> bool {
    let family = event.rsplit_once(':').map(|(f, _)| f);
    subscriptions.split(' ').any(|s| s == event || s.strip_suffix(":*").is_some_and(|f| Some(f) == family))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_are_validated_and_normalised() {
        let ok = validate_subscriptions(&["users:*".into(), "daily_records:updated".into(), "users:*".into()]).unwrap();
        assert_eq!(ok, "daily_records:updated users:*");
        assert!(validate_subscriptions(&[]).is_err());
        let err = validate_subscriptions(&["users:exploded".into(), "nope:*".into()]).unwrap_err();
        assert_eq!(err.0.len(), 2);
        assert_eq!(err.0[1].path, "events[1]");
    }

    #[test]
    fn patterns_match_families() {
        assert!(matches("users:*", "users:created"));
        assert!(matches("meals:updated users:created", "users:created"));
        assert!(!matches("users:*", "users.data_syncs:updated"));
        assert!(matches("users.data_syncs:*", "users.data_syncs:updated"));
        assert!(!matches("users:deleted", "users:created"));
    }
}
