//! Site configuration: TOML parsed into raw serde structures, then validated into settings
//! (errors name the file, key and value), and the rules that select series.
