//! Positional `?` parameters (what ADBC and JDBC clients write) as DataFusion's `$1, $2, ...`.

use datafusion::error::Result;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// Rewrites each `?` placeholder to `$n`, numbered in order of appearance. SQL without `?`
/// is returned unchanged.
pub(crate) fn number_question_marks(sql: &str) -> Result<String> {
    if !sql.contains('?') {
        return Ok(sql.to_string());
    }
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize()
        .map_err(|e| datafusion::error::DataFusionError::SQL(Box::new(e.into()), None))?;
    if !tokens
        .iter()
        .any(|t| matches!(t, Token::Placeholder(p) if p == "?"))
    {
        return Ok(sql.to_string());
    }
    let mut n = 0;
    let mut out = String::with_capacity(sql.len() + 8);
    for t in tokens {
        match t {
            Token::Placeholder(p) if p == "?" => {
                n += 1;
                out.push_str(&format!("${n}"));
            }
            t => out.push_str(&t.to_string()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_order_and_leaves_strings_alone() {
        assert_eq!(
            number_question_marks("SELECT * FROM t WHERE a = ? AND b = '?' AND c > ?").unwrap(),
            "SELECT * FROM t WHERE a = $1 AND b = '?' AND c > $2"
        );
        assert_eq!(number_question_marks("SELECT 1").unwrap(), "SELECT 1");
    }
}
