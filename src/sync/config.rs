//! IMAP accounts for `msgfs sync`: `accounts.toml`, one `[account.NAME]` table each.
//!
//! Every error names the file, the account and the key, on one line. The password is never
//! stored here: it is fetched when needed (`MSGFS_IMAP_PASSWORD`, else the first line of
//! `pass_cmd`'s output) into a [`Password`] whose `Debug` hides it, so no log line or saved
//! structure can carry it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// How the connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tls {
    /// TLS from the first byte (port 993).
    Implicit,
    /// Plain text upgraded by STARTTLS before login; never falls back to plain text.
    Starttls,
    /// Plain text: only to a loopback host, where nothing crosses a network.
    None,
}

/// More deletions than this in one folder in one run are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaxDeletes {
    Count(u64),
    /// Percent of the folder's messages.
    Percent(u32),
}

impl MaxDeletes {
    /// The number of deletions allowed in a folder of `total` messages (rounded down).
    pub fn limit(self, total: u64) -> u64 {
        match self {
            MaxDeletes::Count(n) => n,
            MaxDeletes::Percent(p) => total * u64::from(p) / 100,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub user: String,
    /// Shell command whose first output line is the password.
    pub pass_cmd: Option<String>,
    /// Extra CA certificate(s), PEM, trusted besides the system's roots (self-signed servers).
    pub ca_file: Option<PathBuf>,
    pub store: PathBuf,
    /// Patterns on the server's names (UTF-8); `!` excludes; see [`folder_selected`].
    pub folders: Vec<String>,
    pub max_deletes: MaxDeletes,
}

#[derive(Debug)]
pub struct Config {
    pub path: PathBuf,
    pub accounts: BTreeMap<String, Account>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// A password; `Debug` prints `***` and there is no `Display`, so it cannot reach a log by accident.
pub struct Password(String);

impl Password {
    /// For a password obtained elsewhere (a prompt, a test).
    pub fn new(secret: String) -> Password {
        Password(secret)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// `$XDG_CONFIG_HOME/msgfs/accounts.toml`, else `$HOME/.config/msgfs/accounts.toml`. The XDG
/// specification says a relative XDG_CONFIG_HOME is invalid and must be ignored.
pub fn default_path(xdg_config_home: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
    let base = match xdg_config_home.filter(|x| x.starts_with('/')) {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(home.filter(|h| !h.is_empty())?).join(".config"),
    };
    Some(base.join("msgfs").join("accounts.toml"))
}

impl Config {
    /// Reads `explicit` (the `--config FILE`) or the default path.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let home = std::env::var("HOME").ok();
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => default_path(std::env::var("XDG_CONFIG_HOME").ok().as_deref(), home.as_deref())
                .ok_or_else(|| ConfigError("no accounts file: HOME is not set; use --config FILE".into()))?,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ConfigError(format!(
                "{}: no accounts file; write one with an [account.NAME] table (see THE ACCOUNTS FILE in msgfs(5)) or name another with --config",
                path.display()
            )),
            _ => ConfigError(format!("{}: {e}", path.display())),
        })?;
        Config::parse(&path, &text, home.as_deref())
    }

    /// Parses the text of `path`; `home` expands a leading `~` in `store` and `ca_file`.
    pub fn parse(path: &Path, text: &str, home: Option<&str>) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let table: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError(format!("{file}: {}", one_line(&e.to_string()))))?;
        let mut accounts = BTreeMap::new();
        for (key, value) in &table {
            if key != "account" {
                return Err(ConfigError(format!("{file}: unknown key {key} (accounts go in [account.NAME] tables)")));
            }
            let Some(all) = value.as_table() else {
                return Err(ConfigError(format!("{file}: account must be a table of [account.NAME] tables")));
            };
            for (name, body) in all {
                let ctx = Ctx { file: &file, account: name, home };
                let Some(body) = body.as_table() else {
                    return Err(ctx.err("", "must be a table"));
                };
                accounts.insert(name.clone(), ctx.account(body)?);
            }
        }
        Ok(Config { path: path.to_path_buf(), accounts })
    }

    /// The named account, or the only one when no name is given.
    pub fn account(&self, name: Option<&str>) -> Result<&Account, ConfigError> {
        let file = self.path.display();
        match name {
            Some(n) => self.accounts.get(n).ok_or_else(|| ConfigError(format!("{file}: no account {n}"))),
            None if self.accounts.len() == 1 => Ok(self.accounts.values().next().unwrap()),
            None if self.accounts.is_empty() => Err(ConfigError(format!("{file}: no [account.NAME] table"))),
            None => Err(ConfigError(format!(
                "{file}: several accounts ({}); name one",
                self.accounts.keys().cloned().collect::<Vec<_>>().join(", ")
            ))),
        }
    }
}

/// TOML errors span lines (a caret under the source); ours are one line each.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

struct Ctx<'a> {
    file: &'a str,
    account: &'a str,
    home: Option<&'a str>,
}

const KEYS: &[&str] = &["host", "port", "tls", "user", "pass_cmd", "ca_file", "store", "folders", "max_deletes"];

impl Ctx<'_> {
    fn err(&self, key: &str, what: &str) -> ConfigError {
        if key.is_empty() {
            ConfigError(format!("{}: account {}: {what}", self.file, self.account))
        } else {
            ConfigError(format!("{}: account {}: key {key}: {what}", self.file, self.account))
        }
    }

    fn string(&self, t: &toml::Table, key: &str) -> Result<Option<String>, ConfigError> {
        match t.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(toml::Value::String(_)) => Err(self.err(key, "must not be empty")),
            Some(_) => Err(self.err(key, "must be a string")),
        }
    }

    fn required(&self, t: &toml::Table, key: &str) -> Result<String, ConfigError> {
        self.string(t, key)?.ok_or_else(|| self.err(key, "is missing"))
    }

    fn expand(&self, p: &str, key: &str) -> Result<PathBuf, ConfigError> {
        if p == "~" || p.starts_with("~/") {
            let home = self.home.ok_or_else(|| self.err(key, "starts with ~ but HOME is not set"))?;
            Ok(PathBuf::from(format!("{home}{}", &p[1..])))
        } else {
            Ok(PathBuf::from(p))
        }
    }

    fn account(&self, t: &toml::Table) -> Result<Account, ConfigError> {
        if let Some(k) = t.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(self.err(k, &format!("unknown key (known: {})", KEYS.join(", "))));
        }
        let host = self.required(t, "host")?;
        let tls = match self.string(t, "tls")?.as_deref() {
            None | Some("implicit") => Tls::Implicit,
            Some("starttls") => Tls::Starttls,
            Some("none") => Tls::None,
            Some(other) => return Err(self.err("tls", &format!("{other:?} is not implicit, starttls or none"))),
        };
        if tls == Tls::None && !is_loopback(&host) {
            return Err(self.err(
                "tls",
                &format!("none is only allowed to a loopback host, not {host}: the password would cross the network in clear"),
            ));
        }
        let port = match t.get("port") {
            None => match tls {
                Tls::Implicit => 993,
                Tls::Starttls | Tls::None => 143,
            },
            Some(toml::Value::Integer(n)) if (1..=65535).contains(n) => *n as u16,
            Some(_) => return Err(self.err("port", "must be a number from 1 to 65535")),
        };
        let folders = match t.get("folders") {
            None => vec!["*".to_string()],
            Some(toml::Value::Array(a)) => a
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) if !s.is_empty() && s != "!" => Ok(s.clone()),
                    _ => Err(self.err("folders", "must be a list of non-empty strings")),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(self.err("folders", "must be a list of strings")),
        };
        let max_deletes = match t.get("max_deletes") {
            None => MaxDeletes::Percent(10),
            Some(toml::Value::Integer(n)) if *n >= 0 => MaxDeletes::Count(*n as u64),
            Some(toml::Value::String(s)) => parse_max_deletes(s).ok_or_else(|| {
                self.err("max_deletes", &format!("{s:?} is neither a number nor a percentage like \"10%\""))
            })?,
            Some(_) => return Err(self.err("max_deletes", "must be a number or a percentage like \"10%\"")),
        };
        Ok(Account {
            name: self.account.to_string(),
            host,
            port,
            tls,
            user: self.required(t, "user")?,
            pass_cmd: self.string(t, "pass_cmd")?,
            ca_file: self.string(t, "ca_file")?.map(|p| self.expand(&p, "ca_file")).transpose()?,
            store: self.expand(&self.required(t, "store")?, "store")?,
            folders,
            max_deletes,
        })
    }
}

fn parse_max_deletes(s: &str) -> Option<MaxDeletes> {
    let s = s.trim();
    match s.strip_suffix('%') {
        Some(p) => p.trim().parse().ok().filter(|p| *p <= 100).map(MaxDeletes::Percent),
        None => s.parse().ok().map(MaxDeletes::Count),
    }
}

/// `localhost` or a loopback address; no name resolution, so a DNS answer cannot make a
/// remote host count as local.
pub fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().map(|a| a.is_loopback()).unwrap_or(false)
}

impl Account {
    /// `MSGFS_IMAP_PASSWORD` if set, else the first line of `pass_cmd`'s output. The
    /// command's output is never quoted in an error: it may be the secret itself.
    pub fn password(&self) -> Result<Password, ConfigError> {
        if let Ok(p) = std::env::var("MSGFS_IMAP_PASSWORD") {
            return Ok(Password(p));
        }
        let ctx = |what: String| ConfigError(format!("account {}: key pass_cmd: {what}", self.name));
        let Some(cmd) = &self.pass_cmd else {
            return Err(ctx("is missing and MSGFS_IMAP_PASSWORD is not set".into()));
        };
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stdin(std::process::Stdio::inherit())
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| ctx(format!("cannot run sh: {e}")))?;
        if !out.status.success() {
            return Err(ctx(format!("{cmd:?} failed ({})", out.status)));
        }
        let text =
            String::from_utf8(out.stdout).map_err(|_| ctx(format!("{cmd:?} printed bytes that are not UTF-8")))?;
        let first = text.lines().next().unwrap_or("");
        if first.is_empty() {
            return Err(ctx(format!("{cmd:?} printed no password")));
        }
        Ok(Password(first.to_string()))
    }
}

/// Whether a folder (server name in UTF-8, `delimiter` its hierarchy character) is synced:
/// it matches at least one plain pattern (none means all) and no `!` pattern. `*` matches
/// anything, `%` anything but the delimiter, as in IMAP LIST.
pub fn folder_selected(patterns: &[String], name: &str, delimiter: Option<char>) -> bool {
    let (excl, incl): (Vec<&String>, Vec<&String>) = patterns.iter().partition(|p| p.starts_with('!'));
    let included = incl.is_empty() || incl.iter().any(|p| wildmatch(p, name, delimiter));
    included && !excl.iter().any(|p| wildmatch(&p[1..], name, delimiter))
}

fn wildmatch(pattern: &str, name: &str, delim: Option<char>) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matcher: `ok[j]` = pattern prefix consumed so far matches name prefix j.
    let mut ok = vec![false; n.len() + 1];
    ok[0] = true;
    for &pc in &p {
        let mut next = vec![false; n.len() + 1];
        match pc {
            '*' | '%' => {
                for j in 0..=n.len() {
                    next[j] = ok[j] || (j > 0 && next[j - 1] && (pc == '*' || Some(n[j - 1]) != delim));
                }
            }
            c => {
                for j in 1..=n.len() {
                    next[j] = ok[j - 1] && n[j - 1] == c;
                }
            }
        }
        ok = next;
    }
    ok[n.len()]
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
