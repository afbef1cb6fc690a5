//! `sluice probe URL`: one HTTP/1.0 GET over plain TCP, for container health checks.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::cli::ProbeArgs;

pub(crate) fn run(args: &ProbeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let rest = args
        .url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{}: only http:// addresses are probed", args.url))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let timeout = Duration::from_secs(args.timeout_secs.max(1));
    let addr = authority
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))?;
    let mut conn = TcpStream::connect_timeout(&addr, timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    write!(
        conn,
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer)?;
    let status = answer.lines().next().unwrap_or_default();
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    if code.starts_with('2') {
        println!("{status}");
        Ok(())
    } else {
        Err(format!("{}: {status}", args.url).into())
    }
}
