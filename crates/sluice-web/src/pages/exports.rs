//! "Export now" on a tenant's overview: any of the tenant's people puts a fresh CSV or XLSX
//! file of a type's records into the tenant's /exports (as `sluice export` and the API do).

use super::layout::not_found;
use super::{Failed, TenantPath, Viewer, blocking, reported};
use crate::Web;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct ExportForm {
    #[serde(default)]
    csrf: String,
    #[serde(default, rename = "type")]
    type_name: String,
    #[serde(default)]
    format: String,
}

pub async fn export_now(
    State(web): State<Web>,
    viewer: Viewer,
    TenantPath(tenant): TenantPath,
    Form(form): Form<ExportForm>,
) -> Response {
    if !viewer.may(tenant.as_str()) {
        return not_found(&viewer);
    }
    if let Some(refused) = viewer.refuse_without_csrf(&form.csrf) {
        return refused;
    }
    let here = format!("/t/{tenant}");
    let name = tenant.clone();
    let done = blocking(move || {
        let asked = crate::ExportAsked {
            type_name: &form.type_name,
            format: &form.format,
            columns: &[],
            filters: &[],
            bom: form.format == "csv",
        };
        match crate::export_for(&web, &name, asked) {
            Ok(done) => Ok(done),
            Err(crate::ExportRefused::NotTheirs) => Err(Failed::said("this tenant takes no such type")),
            Err(crate::ExportRefused::Bad(why)) => Err(Failed::Said(why)),
            Err(crate::ExportRefused::Failed(_)) => {
                Err(Failed::said("the file could not be written; the server log says why"))
            }
        }
    })
    .await;
    if matches!(done, Err(Failed::Interrupted)) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    reported(&viewer, done, &here, "Not exported", |(d, ty)| {
        format!("Exported {} {ty} records to {} ({} bytes).", d.written.rows, d.path, d.written.bytes)
    })
}
