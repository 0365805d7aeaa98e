//! `crosslore` command-line interface.
fn main() -> anyhow::Result<()> {
    println!("crosslore: the CLI arrives with issue 4 (see README)");
    Ok(())
}
