//! Operator templates, compiled once, and the variable checks that run
//! before rendering.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use minijinja::{AutoEscape, Environment, UndefinedBehavior};

use delta_host_api::messaging::SendError;

use crate::BuildError;
use crate::config::{ChannelId, TemplateConfig};

/// Longest rendered SMS body accepted (Twilio's limit for a concatenated
/// message).
pub(crate) const MAX_SMS_BODY_CHARS: usize = 1600;

/// One compiled template plus its security settings.
#[derive(Debug)]
pub(crate) struct Template {
    pub(crate) channel: ChannelId,
    pub(crate) approved: bool,
    pub(crate) html: bool,
    allowed: HashSet<String>,
    /// Variables the subject and body reference, sorted so that
    /// `variable-missing` names the same variable every time.
    used: BTreeSet<String>,
    max_variable_len: usize,
    subject_name: Option<String>,
    body_name: String,
}

/// The rendered parts of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rendered {
    /// Email subject (single line); `None` for SMS.
    pub(crate) subject: Option<String>,
    /// Message body.
    pub(crate) body: String,
    /// Whether `body` is HTML.
    pub(crate) html: bool,
}

/// Every template of the node, in one minijinja environment.
pub(crate) struct Templates {
    env: Environment<'static>,
    by_id: HashMap<String, Template>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("ids", &self.by_id.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Whether `c` may not appear in a variable value or a subject: control
/// characters (CR, LF, NUL, TAB, C1 ...) and the Unicode line and paragraph
/// separators, which some mail clients also treat as line breaks.
pub(crate) fn is_forbidden_char(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Templates {
    /// Compile every template and check it against its own declaration.
    pub(crate) fn compile(configs: &[TemplateConfig]) -> Result<Self, BuildError> {
        let mut env = Environment::new();
        // A variable the template uses but the context lacks is an error,
        // never an empty string: a message must not go out half-rendered.
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Only HTML bodies are escaped; subjects and text bodies are sent as
        // they render (subjects are separately held to a single line).
        env.set_auto_escape_callback(|name| {
            if name.ends_with("#body.html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        let globals: HashSet<String> = env.globals().map(|(name, _)| name.to_owned()).collect();

        let mut by_id = HashMap::new();
        for config in configs {
            let bad = |reason: String| BuildError::Template {
                id: config.id.clone(),
                reason,
            };
            if by_id.contains_key(&config.id) {
                return Err(bad("duplicate template id".into()));
            }
            match (config.channel, &config.subject) {
                (ChannelId::Email, None) => {
                    return Err(bad("email templates need a subject".into()));
                }
                (ChannelId::Sms, Some(_)) => {
                    return Err(bad("SMS templates have no subject".into()));
                }
                _ => {}
            }
            if config.html && config.channel != ChannelId::Email {
                return Err(bad("only email templates can be HTML".into()));
            }
            if config.max_variable_len == 0 {
                return Err(bad("max_variable_len must be at least 1".into()));
            }
            if let Some(name) = config.variables.iter().find(|v| !is_identifier(v)) {
                return Err(bad(format!("variable name {name:?} is not an identifier")));
            }

            let mut used = BTreeSet::new();
            let subject_name = match &config.subject {
                Some(source) => {
                    // The operator's own text must not break the header
                    // either; variables are checked per send.
                    if source.chars().any(is_forbidden_char) {
                        return Err(bad(
                            "subject contains a line break or control character".into()
                        ));
                    }
                    let name = format!("{}#subject", config.id);
                    env.add_template_owned(name.clone(), source.clone())
                        .map_err(|e| bad(format!("subject: {e}")))?;
                    used.extend(undeclared(&env, &name, &globals)?);
                    Some(name)
                }
                None => None,
            };
            let body_name = format!(
                "{}#body.{}",
                config.id,
                if config.html { "html" } else { "txt" }
            );
            env.add_template_owned(body_name.clone(), config.body.clone())
                .map_err(|e| bad(format!("body: {e}")))?;
            used.extend(undeclared(&env, &body_name, &globals)?);

            let allowed: HashSet<String> = config.variables.iter().cloned().collect();
            if let Some(name) = used.iter().find(|v| !allowed.contains(*v)) {
                // Such a template could never render: refuse it at startup.
                return Err(bad(format!(
                    "uses variable {name:?} that is not in its variables list"
                )));
            }

            by_id.insert(
                config.id.clone(),
                Template {
                    channel: config.channel,
                    approved: config.approved,
                    html: config.html,
                    allowed,
                    used,
                    max_variable_len: config.max_variable_len,
                    subject_name,
                    body_name,
                },
            );
        }
        Ok(Self { env, by_id })
    }

    /// The template with this id.
    pub(crate) fn get(&self, id: &str) -> Option<&Template> {
        self.by_id.get(id)
    }

    /// Render `template` with already-checked `variables`.
    pub(crate) fn render(
        &self,
        template: &Template,
        variables: &BTreeMap<&str, &str>,
    ) -> Result<Rendered, String> {
        let render = |name: &str| {
            self.env
                .get_template(name)
                .and_then(|t| t.render(variables))
                // minijinja's message names the template and the failing
                // expression: operator data, no secrets.
                .map_err(|e| format!("template rendering failed: {e}"))
        };
        let subject = match &template.subject_name {
            Some(name) => {
                let subject = render(name)?;
                // Defence in depth: variables and the subject source are
                // already free of line breaks, but a filter could still
                // produce one; nothing multi-line may reach a header.
                if subject.chars().any(is_forbidden_char) {
                    return Err("rendered subject is not a single line".into());
                }
                Some(subject)
            }
            None => None,
        };
        let body = render(&template.body_name)?;
        if template.channel == ChannelId::Sms && body.chars().count() > MAX_SMS_BODY_CHARS {
            return Err(format!(
                "rendered SMS is longer than {MAX_SMS_BODY_CHARS} characters"
            ));
        }
        Ok(Rendered {
            subject,
            body,
            html: template.html,
        })
    }
}

fn undeclared(
    env: &Environment<'static>,
    name: &str,
    globals: &HashSet<String>,
) -> Result<Vec<String>, BuildError> {
    let template = env.get_template(name).map_err(|e| BuildError::Template {
        id: name.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(template
        .undeclared_variables(false)
        .into_iter()
        // `range`, `namespace`, ... are functions, not agent variables.
        .filter(|v| !globals.contains(v))
        .collect())
}

impl Template {
    /// The variable checks, in order: every variable allowed, every value
    /// valid, every used variable present. Returns the variables as a map
    /// for rendering.
    pub(crate) fn check_variables<'a>(
        &self,
        variables: &'a [(String, String)],
    ) -> Result<BTreeMap<&'a str, &'a str>, SendError> {
        if let Some((name, _)) = variables.iter().find(|(n, _)| !self.allowed.contains(n)) {
            return Err(SendError::VariableNotAllowed(name.clone()));
        }
        let mut map = BTreeMap::new();
        for (name, value) in variables {
            let too_long = value.chars().count() > self.max_variable_len;
            let forbidden = value.chars().any(is_forbidden_char);
            // A repeated name is ambiguous (which value wins?), so it is
            // refused rather than resolved silently.
            let duplicate = map.insert(name.as_str(), value.as_str()).is_some();
            if too_long || forbidden || duplicate {
                return Err(SendError::VariableInvalid(name.clone()));
            }
        }
        if let Some(name) = self.used.iter().find(|n| !map.contains_key(n.as_str())) {
            return Err(SendError::VariableMissing(name.clone()));
        }
        Ok(map)
    }
}
