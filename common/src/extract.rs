//! Request extractors whose rejections are JSON errors.
//!
//! axum's own `Json` rejects bad bodies with a plain-text message. This wrapper keeps its
//! parsing (and its precise messages, with the path of the offending field) but answers
//! with the project's [`ErrorBody`](crate::error::ErrorBody), so a client sees one error
//! format whatever went wrong.

use axum::{
    extract::{FromRequest, Request, rejection::JsonRejection},
    http::StatusCode,
};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON request body; see the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(rejection_to_error(rejection)),
        }
    }
}

fn rejection_to_error(rejection: JsonRejection) -> ApiError {
    let (status, code, message) = match &rejection {
        JsonRejection::JsonDataError(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            // "user_id: invalid type: string \"x\", expected i64 at line 1 column 15"
            source_text(e),
        ),
        JsonRejection::JsonSyntaxError(e) => {
            (StatusCode::BAD_REQUEST, "malformed_json", source_text(e))
        }
        JsonRejection::MissingJsonContentType(_) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected a body with Content-Type: application/json".to_owned(),
        ),
        JsonRejection::BytesRejection(_) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is larger than this endpoint accepts".to_owned(),
            )
        }
        _ => (rejection.status(), "unreadable_body", rejection.body_text()),
    };
    ApiError::client(status, code, message)
}

/// axum wraps serde's error in its own ("Failed to deserialize the JSON body..."); the
/// innermost error is the part that says what is wrong.
fn source_text(e: &dyn std::error::Error) -> String {
    let mut innermost = e;
    while let Some(next) = innermost.source() {
        innermost = next;
    }
    innermost.to_string()
}
