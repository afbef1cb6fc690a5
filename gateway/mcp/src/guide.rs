//! What a model reads before it asks: the schema notes an analyst would give a new
//! colleague, and the vetted seed questions with their SQL, served as MCP resources.

/// One resource of the guide.
#[derive(Debug)]
pub(crate) struct GuidePage {
    pub(crate) uri: &'static str,
    pub(crate) name: &'static str,
    pub(crate) description: &'static str,
    pub(crate) text: &'static str,
}

pub(crate) const GUIDE: &[GuidePage] = &[
    GuidePage {
        uri: "sluice://guide/schema-notes",
        name: "schema-notes",
        description: "Read first: time is UTC, ts is the start of a play, one row is one play, \
                      the gateway scopes every query to the listener, how tables join.",
        text: include_str!("guide/schema_notes.md"),
    },
    GuidePage {
        uri: "sluice://guide/seed-questions",
        name: "seed-questions",
        description: "Vetted SQL for the common questions (top artist in a year, most played \
                      songs last summer, first stream, taste over a year, never played), to \
                      adapt.",
        text: include_str!("guide/seed_questions.md"),
    },
];

/// What the server tells a model when it connects.
pub(crate) const INSTRUCTIONS: &str = "Sluice answers SQL about music listening. As a \
listener's agent you see only that listener's plays; the gateway adds the filter. Read the \
resource sluice://guide/schema-notes first (time is UTC; ts is when a play started), adapt a \
query from sluice://guide/seed-questions, check columns with describe_table, then call query. \
Each answer carries a manifest: say as of when it is (its watermark) when you answer.";

pub(crate) fn page(uri: &str) -> Option<&'static GuidePage> {
    GUIDE.iter().find(|p| p.uri == uri)
}
