//! Why a patch failed, and how the API server answers it.

/// Why a patch could not be applied.
///
/// Each variant says which HTTP status and `Status.reason` the real API server answers with; an
/// API server built on this crate gets both from [`http_status`](Self::http_status) and
/// [`reason`](Self::reason), and the `Display` text is the `Status.message`.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum PatchError {
    /// The body is not JSON. **400 BadRequest**, for example
    /// `error decoding patch: unexpected end of JSON input` (reference 26).
    #[error("{message}")]
    InvalidJson {
        /// The message, worded as upstream's.
        message: String,
    },

    /// The body is JSON, but not the shape its patch type needs: a JSON Patch that is not an array
    /// of operations, a merge or strategic merge patch that is not an object. **400 BadRequest**,
    /// for example `error decoding patch: json: cannot unmarshal object into Go value of type
    /// []handlers.jsonPatchOp` (reference 25).
    #[error("{message}")]
    WrongShape {
        /// The message, worded as upstream's.
        message: String,
    },

    /// A JSON Patch operation did not apply: a `test` that failed, a path that does not exist
    /// (such as `add /status/reservedFor/-` while the list is absent), an unknown `op`.
    /// **422 Invalid**, with upstream's generic message and no details (references 25 and 34).
    #[error("the server rejected our request due to an error in our request")]
    JsonPatchFailed {
        /// What failed, for logs; the server does not send it to the client.
        detail: String,
    },

    /// A JSON Patch with more operations than the server accepts. **413 RequestEntityTooLarge**
    /// (upstream `maxJSONPatchOperations`).
    #[error("The allowed maximum operations in a JSON patch is {max}, got {got}")]
    TooManyOperations {
        /// The limit, 10000.
        max: usize,
        /// The number of operations in the patch.
        got: usize,
    },

    /// A malformed strategic merge patch: an unknown `$patch` value, a list element without its
    /// merge key, a bad `$deleteFromPrimitiveList`, `$setElementOrder` or `$retainKeys`
    /// directive, elements of different types in one list. **400 BadRequest**.
    ///
    /// Upstream answers 400 for the malformed directives it has sentinel errors for
    /// (`mergepatch.ErrBadPatchFormatFor…`) and an untyped 500 for the rest; we answer 400 for
    /// all of them because the request, not the server, is at fault, and a client must not retry.
    #[error("{message}")]
    InvalidStrategicMergePatch {
        /// What is wrong, worded as upstream's where it has a fixed text.
        message: String,
    },

    /// A strategic merge patch that merges a list of lists. **422 Invalid** (upstream
    /// `mergepatch.ErrNoListOfLists`).
    #[error("lists of lists are not supported")]
    ListOfLists,
}

impl PatchError {
    /// The HTTP status the API server answers this error with.
    pub fn http_status(&self) -> u16 {
        match self {
            PatchError::InvalidJson { .. }
            | PatchError::WrongShape { .. }
            | PatchError::InvalidStrategicMergePatch { .. } => 400,
            PatchError::TooManyOperations { .. } => 413,
            PatchError::JsonPatchFailed { .. } | PatchError::ListOfLists => 422,
        }
    }

    /// The `reason` of the `Status` object the API server answers this error with.
    pub fn reason(&self) -> &'static str {
        match self.http_status() {
            400 => "BadRequest",
            413 => "RequestEntityTooLarge",
            _ => "Invalid",
        }
    }

    /// A malformed strategic merge patch; see [`PatchError::InvalidStrategicMergePatch`].
    pub(crate) fn invalid_smp(message: impl Into<String>) -> Self {
        PatchError::InvalidStrategicMergePatch {
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn works_when_each_error_maps_to_the_servers_status_and_reason() {
        let cases = [
            (
                PatchError::InvalidJson {
                    message: String::new(),
                },
                400,
                "BadRequest",
            ),
            (
                PatchError::WrongShape {
                    message: String::new(),
                },
                400,
                "BadRequest",
            ),
            (
                PatchError::JsonPatchFailed {
                    detail: String::new(),
                },
                422,
                "Invalid",
            ),
            (
                PatchError::TooManyOperations { max: 1, got: 2 },
                413,
                "RequestEntityTooLarge",
            ),
            (PatchError::invalid_smp("x"), 400, "BadRequest"),
            (PatchError::ListOfLists, 422, "Invalid"),
        ];
        for (err, status, reason) in cases {
            assert_eq!(err.http_status(), status, "{err:?}");
            assert_eq!(err.reason(), reason, "{err:?}");
        }
    }

    #[test]
    fn works_when_json_patch_failure_has_the_servers_generic_message() {
        let err = PatchError::JsonPatchFailed {
            detail: "value did not match".into(),
        };
        assert_eq!(
            err.to_string(),
            "the server rejected our request due to an error in our request"
        );
    }
}
