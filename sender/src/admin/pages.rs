//! The HTML pages of the Integration Admin.

use common::web::{self, WebBody};
use http::Response;

use super::{Admin, Asked};

/// Routes every path outside `/api/`.
pub(super) async fn route(_admin: &Admin, _asked: &Asked) -> Response<WebBody> {
    web::not_found()
}
