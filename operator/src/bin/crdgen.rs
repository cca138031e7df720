//! Prints the StreamJob CustomResourceDefinition as YAML (`crds/streamjob.yaml` is its output).

fn main() -> anyhow::Result<()> {
    print!("{}", trendstream_operator::crd::crd_yaml()?);
    Ok(())
}
