//! Entry points for the fuzz targets in `fuzz/`: the parts of messaging that
//! take outside input (a guest's recipient and variables, a tenant's
//! template source, an admin's allow-list), exposed without the messaging capability's delivery
//! machinery so that a target calls exactly what a send calls. Not an API.

use crate::recipient;
use crate::{ChannelId, MAX_SMS_BODY_CHARS, TemplateConfig, Templates, is_forbidden_char};

/// A recipient as a send parses it: the address or number that would be
/// placed in a header or handed to the SMS provider, or `None`.
pub fn recipient(channel: ChannelId, raw: &str) -> Option<String> {
    recipient::parse(channel, raw).map(|r| match r {
        recipient::Recipient::Email(address) => address.to_string(),
        recipient::Recipient::Phone(number) => number,
    })
}

/// Whether a send to `raw` on `channel` passes the allow-list `allowed`.
pub fn allowed(channel: ChannelId, raw: &str, allowed: &[String]) -> bool {
    recipient::parse(channel, raw).is_some_and(|r| recipient::is_allowed(&r, allowed))
}

/// What rendering a deployment's template does with a guest's variables:
/// `None` when the template is refused (safe subset, declaration), else the
/// rendered subject and body or why the send was refused.
#[allow(clippy::type_complexity)]
pub fn render(
    template: &TemplateConfig,
    variables: &[(String, String)],
) -> Option<Result<(Option<String>, String), String>> {
    let (templates, errors) = Templates::compile_each(std::slice::from_ref(template));
    if !errors.is_empty() {
        return None;
    }
    let compiled = templates.get(&template.id)?;
    let checked = match compiled.check_variables(variables) {
        Ok(checked) => checked,
        Err(e) => return Some(Err(e.to_string())),
    };
    Some(
        templates
            .render(compiled, &checked)
            .map(|rendered| (rendered.subject, rendered.body)),
    )
}

/// The invariants the targets assert about a rendering: a subject is one
/// line of allowed characters, an SMS fits its length bound.
pub fn check_rendered(channel: ChannelId, subject: Option<&str>, body: &str) -> Result<(), String> {
    if subject.is_some_and(|s| s.chars().any(is_forbidden_char)) {
        return Err("a rendered subject holds a forbidden character".into());
    }
    if channel == ChannelId::Sms && body.chars().count() > MAX_SMS_BODY_CHARS {
        return Err("a rendered SMS is over its length bound".into());
    }
    Ok(())
}
