//! FHIR resources in the log: one stream per resource (`{ResourceType}-{id}`), one event per
//! version. The event body is the resource JSON exactly as a later read returns it
//! (`meta.versionId` = stream revision + 1, `meta.lastUpdated` set by the writer), so a read
//! is a stream read and never a re-serialization.

/// Event type of the first version of a resource.
pub const RESOURCE_CREATED: &str = "ResourceCreated";
/// Event type of every later version.
pub const RESOURCE_UPDATED: &str = "ResourceUpdated";
/// Event type of a deletion. Its body is `{"resourceType": T, "id": ID}`; the deletion is a
/// version of its own (FHIR history lists it), so it also takes a revision.
pub const RESOURCE_DELETED: &str = "ResourceDeleted";
/// Every resource event type: the versions of resources, and nothing else.
pub const RESOURCE_EVENTS: [&str; 3] = [RESOURCE_CREATED, RESOURCE_UPDATED, RESOURCE_DELETED];

/// The stream holding every version of `resource_type/id`.
pub fn stream_name(resource_type: &str, id: &str) -> String {
    format!("{resource_type}-{id}")
}

/// `meta.versionId` of the version at `revision`.
pub fn version_id(revision: u64) -> u64 {
    revision + 1
}

/// Whether `event_type` is one of the resource events.
pub fn is_resource_event(event_type: &str) -> bool {
    matches!(
        event_type,
        RESOURCE_CREATED | RESOURCE_UPDATED | RESOURCE_DELETED
    )
}

/// A FHIR logical id: 1-64 of `[A-Za-z0-9\-\.]`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_fhir_rule() {
        assert!(is_valid_id("abc-123.x"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("a/b"));
        assert!(!is_valid_id(&"a".repeat(65)));
    }

    #[test]
    fn a_resource_is_a_stream_and_a_version_is_a_revision() {
        assert_eq!(stream_name("Patient", "123"), "Patient-123");
        assert_eq!(version_id(0), 1);
        assert!(is_resource_event(RESOURCE_DELETED));
        assert!(!is_resource_event("GrantIssued"));
    }
}
