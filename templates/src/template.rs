//! Templates, compiled once, and the variable checks that run before
//! rendering.
//!
//! Two sources: the operator's (`node.toml` or `delta.toml`), trusted and
//! compiled as a whole at startup; and a deployment's own, authored by a
//! tenant through the control plane, which must also keep to the
//! [`check_safe_subset`] syntax (validated by the control plane, checked
//! again on the node) because a tenant's template renders on a node shared
//! with other tenants.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use minijinja::{AutoEscape, Environment, UndefinedBehavior};

use crate::{ChannelId, TemplateConfig};

/// A template that cannot be used: malformed, outside the safe subset, or
/// inconsistent with its own declaration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template {id:?}: {reason}")]
pub struct TemplateError {
    /// The template id.
    pub id: String,
    /// What is wrong.
    pub reason: String,
}

/// Why a guest's variables were refused, in the order the checks run; the
/// messaging capability answers each with the WIT error of the same name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VariableError {
    /// A variable the template does not declare.
    #[error("variable-not-allowed: {0}")]
    NotAllowed(String),
    /// A value too long, with a forbidden character, or given twice.
    #[error("variable-invalid: {0}")]
    Invalid(String),
    /// A variable the template uses is missing.
    #[error("variable-missing: {0}")]
    Missing(String),
}

/// Longest rendered SMS body accepted (Twilio's limit for a concatenated
/// message).
pub const MAX_SMS_BODY_CHARS: usize = 1600;

/// One compiled template plus its security settings.
#[derive(Debug)]
pub struct Template {
    /// The channel it is for.
    pub channel: ChannelId,
    /// Whether it may be used.
    pub approved: bool,
    /// Whether the body is HTML.
    pub html: bool,
    allowed: HashSet<String>,
    /// Variables the subject and body reference, sorted so that
    /// `variable-missing` names the same variable every time.
    used: BTreeSet<String>,
    max_variable_len: usize,
    /// Per-variable limits overriding `max_variable_len`.
    max_lengths: HashMap<String, usize>,
    subject_name: Option<String>,
    body_name: String,
}

/// The rendered parts of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Email subject (single line); `None` for SMS.
    pub subject: Option<String>,
    /// Message body.
    pub body: String,
    /// Whether `body` is HTML.
    pub html: bool,
}

/// A set of templates (the node's, or one deployment's), in one minijinja
/// environment.
pub struct Templates {
    env: Environment<'static>,
    by_id: HashMap<String, Template>,
    /// Names minijinja defines itself (`range`, `namespace`, ...): functions,
    /// not agent variables.
    globals: HashSet<String>,
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
pub fn is_forbidden_char(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Templates {
    fn empty() -> Self {
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
        let globals = env.globals().map(|(name, _)| name.to_owned()).collect();
        Self {
            env,
            by_id: HashMap::new(),
            globals,
        }
    }

    /// Compile every template and check it against its own declaration;
    /// the first bad one fails the whole set (operator configuration: a
    /// typo must stop the start).
    pub fn compile(configs: &[TemplateConfig]) -> Result<Self, TemplateError> {
        let mut templates = Self::empty();
        for config in configs {
            templates.add(config, false)?;
        }
        Ok(templates)
    }

    /// Compile a deployment's templates, each held to the safe subset. A bad
    /// one is left out (its sends answer `template-not-found`) and reported,
    /// so that one template cannot take an agent's others down with it.
    pub fn compile_each(configs: &[TemplateConfig]) -> (Self, Vec<TemplateError>) {
        let mut templates = Self::empty();
        let mut errors = Vec::new();
        for config in configs {
            if let Err(e) = templates.add(config, true) {
                errors.push(e);
            }
        }
        (templates, errors)
    }

    /// Check `config` and add it; on failure nothing of it stays.
    fn add(&mut self, config: &TemplateConfig, safe_subset: bool) -> Result<(), TemplateError> {
        let bad = |reason: String| TemplateError {
            id: config.id.clone(),
            reason,
        };
        if self.by_id.contains_key(&config.id) {
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
        for (name, len) in &config.max_lengths {
            if !config.variables.contains(name) {
                return Err(bad(format!(
                    "max_lengths names {name:?}, which is not in its variables list"
                )));
            }
            if *len == 0 {
                return Err(bad(format!("max_lengths.{name} must be at least 1")));
            }
        }
        if safe_subset {
            if let Some(source) = &config.subject {
                check_safe_subset(source).map_err(|e| bad(format!("subject: {e}")))?;
            }
            check_safe_subset(&config.body).map_err(|e| bad(format!("body: {e}")))?;
        }

        let subject_name = config
            .subject
            .as_ref()
            .map(|_| format!("{}#subject", config.id));
        let body_name = format!(
            "{}#body.{}",
            config.id,
            if config.html { "html" } else { "txt" }
        );
        let added = self.add_sources(config, subject_name.as_deref(), &body_name);
        let used = match added {
            Ok(used) => used,
            Err(reason) => {
                // Leave no half of a refused template in the environment.
                if let Some(name) = &subject_name {
                    self.env.remove_template(name);
                }
                self.env.remove_template(&body_name);
                return Err(bad(reason));
            }
        };
        self.by_id.insert(
            config.id.clone(),
            Template {
                channel: config.channel,
                approved: config.approved,
                html: config.html,
                allowed: config.variables.iter().cloned().collect(),
                used,
                max_variable_len: config.max_variable_len,
                max_lengths: config
                    .max_lengths
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect(),
                subject_name,
                body_name,
            },
        );
        Ok(())
    }

    /// Compile the subject and body under their names; answers the
    /// variables they use.
    fn add_sources(
        &mut self,
        config: &TemplateConfig,
        subject_name: Option<&str>,
        body_name: &str,
    ) -> Result<BTreeSet<String>, String> {
        let mut used = BTreeSet::new();
        if let (Some(source), Some(name)) = (&config.subject, subject_name) {
            // The author's own text must not break the header either;
            // variables are checked per send.
            if source.chars().any(is_forbidden_char) {
                return Err("subject contains a line break or control character".into());
            }
            self.env
                .add_template_owned(name.to_owned(), source.clone())
                .map_err(|e| format!("subject: {e}"))?;
            used.extend(self.undeclared(name)?);
        }
        self.env
            .add_template_owned(body_name.to_owned(), config.body.clone())
            .map_err(|e| format!("body: {e}"))?;
        used.extend(self.undeclared(body_name)?);
        if let Some(name) = used.iter().find(|v| !config.variables.contains(*v)) {
            // Such a template could never render: refuse it now.
            return Err(format!(
                "uses variable {name:?} that is not in its variables list"
            ));
        }
        Ok(used)
    }

    fn undeclared(&self, name: &str) -> Result<Vec<String>, String> {
        let template = self.env.get_template(name).map_err(|e| e.to_string())?;
        Ok(template
            .undeclared_variables(false)
            .into_iter()
            // `range`, `namespace`, ... are functions, not agent variables.
            .filter(|v| !self.globals.contains(v))
            .collect())
    }

    /// The template with this id.
    pub fn get(&self, id: &str) -> Option<&Template> {
        self.by_id.get(id)
    }

    /// Render `template` with already-checked `variables`.
    pub fn render(
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

impl Template {
    /// The variable checks, in order: every variable allowed, every value
    /// valid, every used variable present. Returns the variables as a map
    /// for rendering.
    pub fn check_variables<'a>(
        &self,
        variables: &'a [(String, String)],
    ) -> Result<BTreeMap<&'a str, &'a str>, VariableError> {
        if let Some((name, _)) = variables.iter().find(|(n, _)| !self.allowed.contains(n)) {
            return Err(VariableError::NotAllowed(name.clone()));
        }
        let mut map = BTreeMap::new();
        for (name, value) in variables {
            let max = self
                .max_lengths
                .get(name)
                .copied()
                .unwrap_or(self.max_variable_len);
            let too_long = value.chars().count() > max;
            let forbidden = value.chars().any(is_forbidden_char);
            // A repeated name is ambiguous (which value wins?), so it is
            // refused rather than resolved silently.
            let duplicate = map.insert(name.as_str(), value.as_str()).is_some();
            if too_long || forbidden || duplicate {
                return Err(VariableError::Invalid(name.clone()));
            }
        }
        if let Some(name) = self.used.iter().find(|n| !map.contains_key(n.as_str())) {
            return Err(VariableError::Missing(name.clone()));
        }
        Ok(map)
    }
}

/// Filters a tenant's template may apply: none of them can make the output
/// longer than a small multiple of its input.
const SAFE_FILTERS: &[&str] = &[
    "upper",
    "lower",
    "title",
    "capitalize",
    "trim",
    "escape",
    "e",
];

/// Check that `source` keeps to the syntax tenants' templates may use:
/// `{{ variable }}`, optionally through [`SAFE_FILTERS`] without arguments
/// (`{{ name | upper }}`); `{% if %}` / `{% elif %}` with a condition
/// `[not] variable [(== | !=) "literal"]`, `{% else %}`, `{% endif %}`; and
/// `{# comments #}`.
///
/// Why a subset: templates render on nodes shared by every tenant, and full
/// minijinja lets a few characters allocate without bound (string
/// repetition, concatenation in loops, `indent` with a large width) or loop
/// for long. With this subset a rendering is bounded by the template's
/// length times its variables' maximum length. Message variables are
/// strings, so loops, arithmetic and calls would add nothing else.
pub fn check_safe_subset(source: &str) -> Result<(), String> {
    let mut rest = source;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let (close, kind) = match after.as_bytes().first() {
            Some(b'{') => ("}}", Tag::Expression),
            Some(b'%') => ("%}", Tag::Statement),
            Some(b'#') => ("#}", Tag::Comment),
            _ => {
                rest = after;
                continue;
            }
        };
        let inner_start = start + 2;
        let Some(len) = rest[inner_start..].find(close) else {
            return Err(format!(
                "a tag opened with {{{} is never closed",
                &after[..1]
            ));
        };
        let inner = &rest[inner_start..inner_start + len];
        rest = &rest[inner_start + len + 2..];
        if kind == Tag::Comment {
            continue;
        }
        // Whitespace control (`{{-`, `-}}`, `{%+`, ...) changes nothing here.
        let inner = inner.strip_prefix(['-', '+']).unwrap_or(inner);
        let inner = inner.strip_suffix(['-', '+']).unwrap_or(inner);
        let tokens = tokenize(inner)?;
        match kind {
            Tag::Expression => check_expression(&tokens)?,
            Tag::Statement => check_statement(&tokens)?,
            Tag::Comment => {}
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Expression,
    Statement,
    Comment,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'a> {
    Ident(&'a str),
    Str,
    Pipe,
    Eq,
    Ne,
}

fn tokenize(inner: &str) -> Result<Vec<Token<'_>>, String> {
    let mut tokens = Vec::new();
    let bytes = inner.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_whitespace() {
            i += 1;
        } else if b.is_ascii_alphabetic() || b == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            tokens.push(Token::Ident(&inner[start..i]));
        } else if b == b'"' || b == b'\'' {
            let end = inner[i + 1..]
                .find(b as char)
                .ok_or("a string literal is never closed")?;
            let literal = &inner[i + 1..i + 1 + end];
            // No escapes and no braces: what the tag scanner saw is what
            // minijinja parses.
            if literal.contains(['\\', '{', '}', '\n', '\r']) {
                return Err("string literals may not contain \\, braces or line breaks".into());
            }
            tokens.push(Token::Str);
            i += end + 2;
        } else if b == b'|' {
            tokens.push(Token::Pipe);
            i += 1;
        } else if inner[i..].starts_with("==") {
            tokens.push(Token::Eq);
            i += 2;
        } else if inner[i..].starts_with("!=") {
            tokens.push(Token::Ne);
            i += 2;
        } else {
            let c = inner[i..].chars().next().unwrap_or('?');
            return Err(format!(
                "{c:?} is not allowed in a tag: templates may use only {{{{ variable }}}}, \
                 {{{{ variable | filter }}}} and if/elif/else/endif"
            ));
        }
    }
    Ok(tokens)
}

fn is_keyword(name: &str) -> bool {
    matches!(
        name,
        "if" | "elif"
            | "else"
            | "endif"
            | "not"
            | "and"
            | "or"
            | "in"
            | "is"
            | "true"
            | "false"
            | "none"
            | "True"
            | "False"
            | "None"
    )
}

/// `variable ( | filter )*`.
fn check_expression(tokens: &[Token<'_>]) -> Result<(), String> {
    let mut it = tokens.iter();
    match it.next() {
        Some(Token::Ident(name)) if !is_keyword(name) => {}
        _ => return Err("an expression must start with a variable name".into()),
    }
    while let Some(token) = it.next() {
        if *token != Token::Pipe {
            return Err("after a variable only `| filter` may follow".into());
        }
        match it.next() {
            Some(Token::Ident(filter)) if SAFE_FILTERS.contains(filter) => {}
            Some(Token::Ident(filter)) => {
                return Err(format!(
                    "filter {filter:?} is not allowed (allowed: {})",
                    SAFE_FILTERS.join(", ")
                ));
            }
            _ => return Err("`|` must be followed by a filter name".into()),
        }
    }
    Ok(())
}

/// `if COND`, `elif COND`, `else`, `endif`.
fn check_statement(tokens: &[Token<'_>]) -> Result<(), String> {
    match tokens {
        [Token::Ident("if" | "elif"), cond @ ..] => check_condition(cond),
        [Token::Ident("else" | "endif")] => Ok(()),
        _ => Err("the only statements allowed are if, elif, else and endif".into()),
    }
}

/// `[not] variable [(== | !=) "literal"]`.
fn check_condition(tokens: &[Token<'_>]) -> Result<(), String> {
    let tokens = match tokens {
        [Token::Ident("not"), rest @ ..] => rest,
        _ => tokens,
    };
    match tokens {
        [Token::Ident(name)] if !is_keyword(name) => Ok(()),
        [Token::Ident(name), Token::Eq | Token::Ne, Token::Str] if !is_keyword(name) => Ok(()),
        _ => Err(
            "a condition is `variable`, `not variable` or `variable == \"text\"` (or !=)".into(),
        ),
    }
}

/// Check a tenant's template as a node will use it: the declaration, the
/// [`check_safe_subset`] syntax, compilation in minijinja's strict mode and
/// a trial rendering with every variable set (so that, for example, an
/// unknown filter is found now rather than when a message is sent).
pub fn check_template(config: &TemplateConfig) -> Result<(), TemplateError> {
    let mut templates = Templates::empty();
    templates.add(config, true)?;
    let bad = |reason: String| TemplateError {
        id: config.id.clone(),
        reason,
    };
    let template = templates
        .get(&config.id)
        .ok_or_else(|| bad("not compiled".into()))?;
    let sample: Vec<(String, String)> = config
        .variables
        .iter()
        .map(|name| (name.clone(), "x".to_owned()))
        .collect();
    let variables = template
        .check_variables(&sample)
        .map_err(|e| bad(format!("trial rendering: {e}")))?;
    templates.render(template, &variables).map_err(bad)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(subject: Option<&str>, body: &str, vars: &[&str]) -> TemplateConfig {
        TemplateConfig {
            id: "t".into(),
            channel: if subject.is_some() {
                ChannelId::Email
            } else {
                ChannelId::Sms
            },
            subject: subject.map(str::to_owned),
            body: body.into(),
            html: false,
            variables: vars.iter().map(|v| (*v).to_owned()).collect(),
            max_variable_len: 16,
            max_lengths: BTreeMap::new(),
            approved: false,
        }
    }

    #[test]
    fn the_safe_subset_takes_variables_filters_and_conditions() {
        for ok in [
            "plain text, even with } and { alone",
            "Hello {{ name }}!",
            "{{name|upper}} {{- name | trim | e -}}",
            "{% if vip %}Dear {{ name | title }}{% elif name == \"x\" %}Hi{% else %}Hey{% endif %}",
            "{%- if not name != 'a' +%}x{% endif %}",
            "{# any comment {{ here }} #}ok",
        ] {
            assert_eq!(check_safe_subset(ok), Ok(()), "{ok}");
        }
        for bad in [
            "{{ name * 100000000 }}",
            "{{ name ~ name }}",
            "{{ name | indent(100000) }}",
            "{{ name | safe }}",
            "{{ name.attr }}",
            "{{ debug() }}",
            "{{ 'x' }}",
            "{% for i in range(10) %}{{ i }}{% endfor %}",
            "{% set x = name %}",
            "{% include 'other' %}",
            "{% macro m() %}{% endmacro %}",
            "{% raw %}{{{% endraw %}",
            "{% if name == \"}}\" %}{% endif %}",
            "{{ name ",
            "{# unclosed",
            "{{ if }}",
            "{% if %}{% endif %}",
        ] {
            assert!(check_safe_subset(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn check_template_compiles_and_renders_once() {
        assert!(
            check_template(&config(Some("Hi {{ name }}"), "Body {{ name }}", &["name"])).is_ok()
        );
        // Uses a variable it does not declare.
        assert!(check_template(&config(Some("Hi"), "{{ other }}", &["name"])).is_err());
        // Syntax error.
        assert!(check_template(&config(Some("Hi"), "{% if name %}", &["name"])).is_err());
        // Outside the subset, though minijinja would compile it.
        assert!(check_template(&config(Some("Hi"), "{{ name * 2 }}", &["name"])).is_err());
        // A per-variable limit for a variable that is not declared.
        let mut c = config(None, "{{ code }}", &["code"]);
        c.max_lengths.insert("other".into(), 4);
        assert!(check_template(&c).is_err());
        c.max_lengths = BTreeMap::from([("code".into(), 0)]);
        assert!(check_template(&c).is_err());
        c.max_lengths = BTreeMap::from([("code".into(), 4)]);
        assert!(check_template(&c).is_ok());
    }

    #[test]
    fn per_variable_limits_apply_and_bad_templates_are_left_out() {
        let mut good = config(None, "{{ code }} {{ name }}", &["code", "name"]);
        good.id = "good".into();
        good.max_lengths.insert("code".into(), 4);
        let mut broken = config(None, "{{ name * 3 }}", &["name"]);
        broken.id = "broken".into();
        let (templates, errors) = Templates::compile_each(&[broken, good]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(templates.get("broken").is_none());
        let t = templates.get("good").expect("compiled");
        let vars = |code: &str| {
            vec![
                ("code".to_owned(), code.to_owned()),
                ("name".to_owned(), "n".repeat(16)),
            ]
        };
        assert!(t.check_variables(&vars("1234")).is_ok());
        assert_eq!(
            t.check_variables(&vars("12345")),
            Err(VariableError::Invalid("code".into()))
        );
    }
}
