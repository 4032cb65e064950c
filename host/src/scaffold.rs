//! `counterpoint new`: a slice that builds and passes its own tests, natively (`cargo test`,
//! pytest-style `python3 -m unittest`, `node --test`, with each SDK's in-memory store) and
//! compiled (`counterpoint test`). Rust by default; `--lang python` or `--lang js`.

use std::path::Path;

use anyhow::{bail, Context as _};

/// The SDKs this binary was built with; new slices use them by path.
const SDK_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-sdk");

/// The language of a new slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

/// The Python and JavaScript templates: (file name in the new slice, text, executable).
const PYTHON: &[(&str, &str, bool)] = &[
    ("definition.py", include_str!("scaffold/python/definition.py"), false),
    ("app.py", include_str!("scaffold/python/app.py"), false),
    ("test_definition.py", include_str!("scaffold/python/test_definition.py"), false),
    ("scenarios.json", include_str!("scaffold/python/scenarios.json"), false),
    ("build.sh", include_str!("scaffold/python/build.sh"), true),
    (".gitignore", include_str!("scaffold/python/gitignore"), false),
    ("README.md", include_str!("scaffold/python/README.md"), false),
];

const JS: &[(&str, &str, bool)] = &[
    ("slice.js", include_str!("scaffold/js/slice.js"), false),
    ("slice.test.js", include_str!("scaffold/js/slice.test.js"), false),
    ("scenarios.json", include_str!("scaffold/js/scenarios.json"), false),
    ("build.sh", include_str!("scaffold/js/build.sh"), true),
    (".gitignore", include_str!("scaffold/js/gitignore"), false),
    ("README.md", include_str!("scaffold/js/README.md"), false),
];

/// Creates a slice named `name` in `dir`, in `lang`.
pub fn new_slice_in(name: &str, dir: &Path, lang: Lang) -> anyhow::Result<()> {
    let (templates, sdk) = match lang {
        Lang::Rust => return new_slice(name, dir),
        Lang::Python => (PYTHON, "python"),
        Lang::Js => (JS, "js"),
    };
    check_name(name, dir)?;
    let sdk = std::fs::canonicalize(Path::new(SDK_DIR).join(sdk))
        .with_context(|| format!("the {sdk} SDK is not under {SDK_DIR}; build counterpoint from its repository"))?;
    for (file, text, executable) in templates {
        let path = dir.join(file);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let text = text
            .replace("{name}", name)
            .replace("{crate}", &name.replace('-', "_"))
            .replace("{sdk}", &sdk.display().to_string());
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        if *executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(())
}

fn check_name(name: &str, dir: &Path) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!("slice name {name:?} must start with a-z and hold only a-z, 0-9 and '-'");
    }
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    Ok(())
}

/// Creates a Rust slice crate named `name` in `dir`.
pub fn new_slice(name: &str, dir: &Path) -> anyhow::Result<()> {
    check_name(name, dir)?;
    let sdk = std::fs::canonicalize(SDK_DIR)
        .with_context(|| format!("the guest SDK is not at {SDK_DIR}; build counterpoint from its repository"))?;
    let crate_name = name.replace('-', "_");
    let files = [
        ("Cargo.toml", CARGO_TOML.replace("{name}", name).replace("{sdk}", &sdk.display().to_string())),
        ("src/lib.rs", LIB_RS.replace("{name}", name)),
        ("scenarios.json", SCENARIOS.to_string()),
        (".gitignore", "target/\n".to_string()),
        ("README.md", README.replace("{name}", name).replace("{crate}", &crate_name)),
    ];
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("a file in the crate")).with_context(|| format!("creating {}", path.display()))?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

const CARGO_TOML: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib"]

[dependencies]
counterpoint-sdk = { path = "{sdk}" }
serde = { version = "1", features = ["derive"] }

[profile.release]
opt-level = "s"
lto = true
strip = true

# A slice is its own workspace, wherever it is created.
[workspace]
"#;

const LIB_RS: &str = r#"//! The {name} slice.

use counterpoint_sdk::prelude::*;

/// Someone was greeted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Greeted {
    pub name: String,
}

impl Event for Greeted {
    const TYPE: &'static str = "Greeted";
    fn tags(&self) -> Vec<String> {
        vec![tag("name", &self.name)]
    }
}

/// Greets someone, once.
#[derive(Debug, Deserialize)]
pub struct Greet {
    pub name: String,
}

impl Command for Greet {
    const NAME: &'static str = "greet";
    const DESCRIPTION: &'static str = "Greets someone, once";
    type Output = String;

    fn run(self, ctx: &mut Context) -> Result<String, Error> {
        if self.name.is_empty() {
            return Err(Error::invalid_input("name must not be empty"));
        }
        let earlier = ctx.read(Query::of::<Greeted>().tag(tag("name", &self.name)))?;
        if !earlier.is_empty() {
            return Err(Error::rejected(format!("{} was already greeted", self.name)));
        }
        let greeting = format!("Hello, {}!", self.name);
        ctx.append(Greeted { name: self.name });
        Ok(greeting)
    }
}

/// How many people were greeted.
#[derive(Debug, Default)]
pub struct Greetings {
    count: u64,
}

#[derive(Debug, Deserialize)]
pub struct NoParams {}

impl Projection for Greetings {
    const NAME: &'static str = "greetings";
    const DESCRIPTION: &'static str = "How many people were greeted";
    type Params = NoParams;
    type Output = u64;

    fn init(_: &NoParams) -> Self {
        Greetings::default()
    }

    fn source(_: &NoParams) -> Query {
        Query::of::<Greeted>()
    }

    fn apply(&mut self, _event: &Envelope) -> Result<(), Error> {
        self.count += 1;
        Ok(())
    }

    fn output(self) -> Result<u64, Error> {
        Ok(self.count)
    }
}

counterpoint_sdk::slice! {
    name: "{name}", version: env!("CARGO_PKG_VERSION"),
    events: [Greeted],
    commands: [Greet],
    projections: [Greetings],
}

#[cfg(test)]
mod tests {
    use super::*;
    use counterpoint_sdk::testing::TestStore;

    #[test]
    fn greets_once() {
        let mut store = TestStore::new();
        assert_eq!(store.run(Greet { name: "Ada".into() }).unwrap(), "Hello, Ada!");
        assert!(matches!(store.run(Greet { name: "Ada".into() }), Err(Error::Rejected(_))));
        assert_eq!(store.events().len(), 1);
        #[derive(Serialize)]
        struct NoParams {}
        assert_eq!(store.project::<Greetings>(&NoParams {}).unwrap(), 1);
    }
}
"#;

const SCENARIOS: &str = r#"{
  "scenarios": [
    {
      "name": "greeting someone appends Greeted",
      "when": { "command": "greet", "input": { "name": "Ada" } },
      "then": { "result": "Hello, Ada!", "events": [ { "type": "Greeted", "data": { "name": "Ada" }, "tags": ["name:Ada"] } ] }
    },
    {
      "name": "nobody is greeted twice",
      "given": [ { "type": "Greeted", "data": { "name": "Ada" } } ],
      "when": { "command": "greet", "input": { "name": "Ada" } },
      "then": { "error": "rejected", "message": "already greeted" }
    },
    {
      "name": "greetings counts them",
      "given": [ { "type": "Greeted", "data": { "name": "Ada" } }, { "type": "Greeted", "data": { "name": "Alan" } } ],
      "when": { "projection": "greetings" },
      "then": { "result": 2 }
    }
  ]
}
"#;

const README: &str = r#"# {name}

A Counterpoint slice.

    cargo test                                        # its logic, natively
    cargo build --target wasm32-wasip2 --release      # the component
    counterpoint test target/wasm32-wasip2/release/{crate}.wasm scenarios.json
    counterpoint deploy target/wasm32-wasip2/release/{crate}.wasm
"#;
