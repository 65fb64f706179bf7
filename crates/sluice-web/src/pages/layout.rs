//! The page shell every dashboard page is drawn in (head, style, nav), and the small pieces
//! pages share: status badges, the CSRF field of a form, notices, and the not-found and
//! refusal pages. All of it maud: values are escaped as they are written.

use super::NoticeQuery;
use super::auth::{Viewer, same_secret};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use sluice_core::TenantName;
use sluice_store::ImportStatus;

/// The style sheet: a constant, the one text written unescaped.
const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
header{background:#1f3b57;color:#fff;padding:.6em 1em;display:flex;gap:1em;align-items:center;flex-wrap:wrap}
header a{color:#fff}main{padding:1em;max-width:1100px;margin:auto}
table{border-collapse:collapse;width:100%;background:#fff}th,td{padding:.35em .5em;border-bottom:1px solid #e3e6ea;text-align:left;vertical-align:top}
.wrap{overflow-x:auto}.badge{display:inline-block;padding:.05em .5em;border-radius:1em;font-size:.85em;color:#fff}
.complete{background:#2e7d32}.incomplete{background:#b26a00}.failed{background:#c62828}.held{background:#6a1b9a}.discarded{background:#607d8b}.superseded{background:#455a64}.running{background:#1565c0}
.card{background:#fff;border:1px solid #e3e6ea;border-radius:6px;padding:1em;margin:0 0 1em}
button{font:inherit;padding:.35em .9em;border-radius:4px;border:1px solid #1f3b57;background:#1f3b57;color:#fff;cursor:pointer}
button.danger{background:#c62828;border-color:#c62828}input{font:inherit;padding:.3em;width:100%;max-width:22em;box-sizing:border-box}
.error{color:#c62828}form.inline{display:inline}";

/// A whole page: `body` in the shell, with the viewer's nav when someone is logged in.
pub fn page(title: &str, viewer: Option<&Viewer>, body: Markup) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width,initial-scale=1";
                title { (title) " · sluice" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    strong { "sluice" }
                    @if let Some(v) = viewer {
                        @match &v.account.tenant {
                            Some(t) => a href={ "/t/" (t) } { (t) },
                            None => a href="/" { "All tenants" },
                        }
                        span style="margin-left:auto" { a href="/account" { (v.account.email) } " (" (v.account.role.as_str()) ")" }
                        form.inline method="post" action="/logout" {
                            (csrf_field(v))
                            button { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    };
    Html(markup.into_string())
}

/// A page with a status: the refusals, not-found and conflict pages.
pub fn status_page(status: StatusCode, title: &str, viewer: &Viewer, body: Markup) -> Response {
    let response = (status, page(title, Some(viewer), body)).into_response();
    if status != StatusCode::FORBIDDEN {
        return response;
    }
    // Every refusal page (not allowed, the CSRF check) is audited, as the viewer's.
    let refusal =
        Box::new(crate::audit::Refusal { actor: viewer.actor(), tenant: viewer.account.tenant.clone() });
    refusal.attach(response)
}

/// The hidden field that carries the session's CSRF token in every form.
pub fn csrf_field(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(viewer.csrf()); }
}

/// An import's status as a coloured badge.
pub fn badge(status: ImportStatus) -> Markup {
    html! { span class={ "badge " (status.as_str()) } { (status.as_str()) } }
}

pub fn not_found(viewer: &Viewer) -> Response {
    status_page(
        StatusCode::NOT_FOUND,
        "Not found",
        viewer,
        html! { h1 { "Not found" } p { "No such page, or not yours." } },
    )
}

/// The page for a viewer who may see the tenant but not manage it.
pub fn not_allowed(viewer: &Viewer, tenant: &TenantName) -> Response {
    status_page(
        StatusCode::FORBIDDEN,
        "Not allowed",
        viewer,
        html! {
            h1 { "Not allowed" }
            p { "Only an owner of " (tenant) ", or a user an owner granted it, manages SFTP credentials and import settings." }
            p { a href={ "/t/" (tenant) } { "Back" } }
        },
    )
}

/// The notice a change left (see `back_to`), if this session signed it.
pub fn notice(viewer: &Viewer, q: &NoticeQuery) -> Markup {
    let signed = !q.done.is_empty() && same_secret(&viewer.sign(&q.done), &q.sig);
    html! {
        @if signed { p.card { (q.done) } }
    }
}

#[cfg(test)]
mod tests {
    use maud::html;

    #[test]
    fn values_are_escaped_by_construction() {
        let hostile = "<script>alert('x')</script> & \"q\"";
        let super::Html(text) = super::page(hostile, None, html! { p title=(hostile) { (hostile) } });
        assert!(!text.contains("<script>"), "{text}");
        assert!(
            text.contains(
                "<title>&lt;script&gt;alert('x')&lt;/script&gt; &amp; &quot;q&quot; · sluice</title>"
            ),
            "{text}"
        );
        assert!(
            text.contains("<p title=\"&lt;script&gt;alert('x')&lt;/script&gt; &amp; &quot;q&quot;\">"),
            "{text}"
        );
        // The style sheet, the one raw text, is there as it is.
        assert!(text.contains(super::STYLE), "{text}");
    }
}
