//! A slice that uses effects, for the host's grant tests: `fetch` calls a URL, `settings`
//! reports its configuration, clock and random bytes (the `effects` import's and WASI's), `files` reads and writes files through
//! WASI's filesystem, and reports an environment variable.

use counterpoint_sdk::effects;
use counterpoint_sdk::prelude::*;

/// `fetch`: GETs `url` with `headers` (if any); returns the status and the body as text.
#[derive(Deserialize)]
pub struct Fetch {
    pub url: String,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
}

#[derive(Serialize)]
pub struct Fetched {
    pub status: u16,
    pub body: String,
}

impl Command for Fetch {
    const NAME: &'static str = "fetch";
    type Output = Fetched;
    fn run(self, _: &mut Context) -> Result<Fetched, Error> {
        let request = effects::HttpRequest { method: "GET".into(), url: self.url, headers: self.headers, body: Vec::new() };
        let response = effects::http(&request)?;
        Ok(Fetched { status: response.status, body: String::from_utf8_lossy(&response.body).into_owned() })
    }
}

/// `settings`: a configuration value, the clock, four random bytes from the `effects` import
/// and eight from WASI's `random` (through `getrandom`, as any library in a slice would).
#[derive(Deserialize)]
pub struct Settings {
    pub key: String,
}

#[derive(Serialize)]
pub struct Reported {
    pub value: Option<String>,
    pub now_ms: u64,
    pub random: Vec<u8>,
    pub wasi_random: Vec<u8>,
}

impl Command for Settings {
    const NAME: &'static str = "settings";
    type Output = Reported;
    fn run(self, _: &mut Context) -> Result<Reported, Error> {
        let mut wasi_random = vec![0; 8];
        getrandom::fill(&mut wasi_random).map_err(|e| Error::Rejected(format!("WASI random: {e}")))?;
        Ok(Reported { value: effects::config(&self.key), now_ms: effects::now_ms(), random: effects::random_bytes(4), wasi_random })
    }
}

/// `files`: reads `read` (if given) and writes `write` = `content` (if given), with std::fs,
/// and reports the variable `env`; each failure is reported, not raised.
#[derive(Deserialize)]
pub struct Files {
    pub read: Option<String>,
    pub write: Option<String>,
    pub content: Option<String>,
    pub env: Option<String>,
}

#[derive(Serialize)]
pub struct FilesReport {
    pub read: Result<String, String>,
    pub write: Result<(), String>,
    pub env: Option<String>,
}

impl Command for Files {
    const NAME: &'static str = "files";
    type Output = FilesReport;
    fn run(self, _: &mut Context) -> Result<FilesReport, Error> {
        let read = match &self.read {
            Some(path) => std::fs::read_to_string(path).map_err(|e| e.to_string()),
            None => Err("not asked".into()),
        };
        let write = match &self.write {
            Some(path) => std::fs::write(path, self.content.unwrap_or_default()).map_err(|e| e.to_string()),
            None => Err("not asked".into()),
        };
        Ok(FilesReport { read, write, env: self.env.and_then(|key| std::env::var(key).ok()) })
    }
}

counterpoint_sdk::slice! {
    name: "effectful", version: env!("CARGO_PKG_VERSION"),
    events: [],
    commands: [Fetch, Settings, Files],
}
