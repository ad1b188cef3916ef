//! The HTML pages of the browser flow: login, consent, errors, the user's grants. Plain
//! forms with labels, no JavaScript, every value escaped.

use sphere_domain::smart::scope::{granular_choices, Scope, ScopeSet};

use crate::smart::reply::escape;

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#1b1f24}\
fieldset{border:1px solid #ccd;border-radius:6px;margin:1rem 0}label{display:block;margin:.3rem 0}\
button{font-size:1rem;padding:.5rem 1rem;margin-right:.5rem}.granular{margin-left:1.5rem}";

pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>{t} - Sphere EHR</title><style>{STYLE}</style></head><body><main><h1>{t}</h1>{body}</main></body></html>",
        t = escape(title)
    )
}

pub fn error_page(message: &str) -> String {
    page(
        "Authorization error",
        &format!(
            "<p role=\"alert\">{}</p><p>Return to the app and try again.</p>",
            escape(message)
        ),
    )
}

/// The login form. `txn` is empty on the grants page login.
/// `alert`: why the last attempt did not sign in (plain text), if it did not.
pub fn login(client_name: Option<&str>, txn: &str, csrf: &str, alert: Option<&str>) -> String {
    let intro = match client_name {
        Some(name) => format!(
            "<p>Sign in to let <strong>{}</strong> connect to your health record.</p>",
            escape(name)
        ),
        None => "<p>Sign in to see the apps you have authorized.</p>".to_owned(),
    };
    let alert = match alert {
        Some(text) => format!("<p role=\"alert\">{}</p>", escape(text)),
        None => String::new(),
    };
    page(
        "Sign in",
        &format!(
            "{intro}{alert}<form method=\"post\" action=\"/auth/login\">\
<input type=\"hidden\" name=\"txn\" value=\"{txn}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<label for=\"username\">Username</label><input id=\"username\" name=\"username\" autocomplete=\"username\" required>\
<label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
<p><button type=\"submit\">Sign in</button></p></form>",
            txn = escape(txn),
            csrf = escape(csrf),
        ),
    )
}

/// The consent page: every requested scope in plain words, as a checkbox named `scope`;
/// category-limited choices under Condition and Observation; a patient picker for
/// practitioners in a standalone `launch/patient`; allow and deny buttons.
pub fn consent(
    client_name: &str,
    username: &str,
    requested: &ScopeSet,
    txn: &str,
    csrf: &str,
    pick_patient: Option<&[String]>,
) -> String {
    let mut items = String::new();
    for (i, (text, scope)) in requested.iter().enumerate() {
        let id = format!("scope-{i}");
        items.push_str(&format!(
            "<label for=\"{id}\"><input type=\"checkbox\" id=\"{id}\" name=\"scope\" value=\"{v}\" checked> {words} <small>({v})</small></label>",
            v = escape(text),
            words = escape(&ScopeSet::describe(text)),
        ));
        if let Scope::Resource(r) = scope {
            let choices = granular_choices(r);
            if !choices.is_empty() {
                items.push_str(&format!(
                    "<fieldset class=\"granular\"><legend>Or share only some {} (untick the line above)</legend>",
                    escape(&r.resource_type)
                ));
                for (j, choice) in choices.iter().enumerate() {
                    let cid = format!("scope-{i}-{j}");
                    items.push_str(&format!(
                        "<label for=\"{cid}\"><input type=\"checkbox\" id=\"{cid}\" name=\"scope\" value=\"{v}\"> {words}</label>",
                        v = escape(choice),
                        words = escape(&ScopeSet::describe(choice)),
                    ));
                }
                items.push_str("</fieldset>");
            }
        }
    }
    let picker = match pick_patient {
        Some(known) => {
            let mut options = String::new();
            for p in known {
                options.push_str(&format!("<option value=\"{p}\">", p = escape(p)));
            }
            format!(
                "<fieldset><legend>Patient</legend><label for=\"patient\">Patient id the app will work with</label>\
<input id=\"patient\" name=\"patient\" list=\"patients\" required><datalist id=\"patients\">{options}</datalist></fieldset>"
            )
        }
        None => String::new(),
    };
    page(
        "Allow access?",
        &format!(
            "<p>Signed in as <strong>{user}</strong>. <strong>{app}</strong> asks to:</p>\
<form method=\"post\" action=\"/auth/consent\"><input type=\"hidden\" name=\"txn\" value=\"{txn}\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><fieldset><legend>Permissions</legend>{items}</fieldset>{picker}\
<p><button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
<button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></p></form>",
            user = escape(username),
            app = escape(client_name),
            txn = escape(txn),
            csrf = escape(csrf),
        ),
    )
}

/// One row of the grants page.
pub struct GrantRow {
    pub grant_id: String,
    pub client_name: String,
    pub scope: String,
    pub created: String,
}

pub fn grants(username: &str, rows: &[GrantRow], csrf: &str) -> String {
    let mut list = String::new();
    if rows.is_empty() {
        list.push_str("<p>You have not authorized any apps.</p>");
    }
    for row in rows {
        list.push_str(&format!(
            "<section><h2>{name}</h2><p>Since {created}. Access: {scope}</p>\
<form method=\"post\" action=\"/auth/grants/revoke\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<input type=\"hidden\" name=\"grant_id\" value=\"{id}\"><button type=\"submit\">Revoke access for {name}</button></form></section>",
            name = escape(&row.client_name),
            created = escape(&row.created),
            scope = escape(&row.scope),
            csrf = escape(csrf),
            id = escape(&row.grant_id),
        ));
    }
    page(
        "Your authorized apps",
        &format!(
            "<p>Signed in as <strong>{}</strong>.</p>{list}",
            escape(username)
        ),
    )
}
