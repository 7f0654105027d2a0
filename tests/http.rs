//! `tunhost serve --http` against the real kernel and real tools (curl, ab): each test has its
//! own network namespace and TUN device, and a web root of its own in a temporary directory.

mod common;
mod tools;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{HOST, TUN_ARGS, Tunhost, in_netns, pattern, run};
use tools::Scratch;

/// `base/www` with an index-less root, a subdirectory, a 3 MB random file, and a secret outside
/// (`base/secret.txt`) that a symbolic link inside points to.
fn web_root(base: &Path) -> PathBuf {
    let www = base.join("www");
    std::fs::create_dir_all(www.join("sub")).unwrap();
    std::fs::write(www.join("big.bin"), pattern(3_000_000, 42)).unwrap();
    std::fs::write(www.join("sub/page.html"), b"<p>sub page</p>\n").unwrap();
    std::fs::write(www.join("hello.txt"), b"hello\n").unwrap();
    std::fs::write(base.join("secret.txt"), b"TOP SECRET\n").unwrap();
    std::os::unix::fs::symlink(base.join("secret.txt"), www.join("escape")).unwrap();
    www
}

/// Run `f` in a namespace of its own with the path of a fresh [`web_root`] in a scratch
/// directory for `test`.
fn with_web_root(test: &str, f: impl FnOnce(&str) + Send) {
    let dir = Scratch::new(test);
    let www = web_root(&dir.0);
    in_netns(|| f(www.to_str().unwrap()));
}

/// Run `f` in a namespace of its own against `tunhost serve --http PORT` over a fresh
/// [`web_root`]; `f` gets the base URL, `http://HOST:PORT`.
fn serving_web_root(test: &str, port: &str, f: impl FnOnce(&str) + Send) {
    with_web_root(test, |root| {
        let _h = serve_http(&["--http", port, "--root", root]);
        f(&format!("http://{HOST}:{port}"));
    });
}

fn serve_http(extra: &[&str]) -> Tunhost {
    let mut args = TUN_ARGS.to_vec();
    args.extend_from_slice(extra);
    Tunhost::serve(&args)
}

/// curl ARGS; returns (exit code, stdout, stderr).
fn curl(args: &[&str]) -> (i32, Vec<u8>, String) {
    let mut argv = vec!["curl", "-sS", "--max-time", "20"];
    argv.extend_from_slice(args);
    let out = run(&argv);
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// curl ARGS, which must succeed: what it wrote to stdout.
fn curl_ok(args: &[&str]) -> Vec<u8> {
    let (code, out, err) = curl(args);
    assert_eq!(code, 0, "curl {args:?}: {err}");
    out
}

/// curl ARGS, which must succeed: what it wrote to stdout, as text.
fn curl_text(args: &[&str]) -> String {
    String::from_utf8(curl_ok(args)).expect("curl's output is UTF-8")
}

/// The HTTP status curl got for URL (with extra flags).
fn status_of(flags: &[&str], url: &str) -> String {
    let mut args = vec!["-o", "/dev/null", "-w", "%{http_code}"];
    args.extend_from_slice(flags);
    args.push(url);
    let (code, out, err) = curl(&args);
    assert_eq!(code, 0, "curl {url}: {err}");
    String::from_utf8(out).unwrap()
}

#[test]
fn default_serve_shows_the_status_page_on_port_80() {
    require_root!();
    in_netns(|| {
        // No flags at all: tunhost0, 192.0.2.2/24, the default services and HTTP on 80.
        let h = Tunhost::serve(&[]);
        assert!(h.banner.contains("http tcp/80"), "{}", h.banner);
        let body = curl_text(&[&format!("http://{HOST}/")]);
        for want in [
            "192.0.2.2/24",
            "tun tunhost0",
            "uptime",
            "packets in",
            "connections",
        ] {
            assert!(body.contains(want), "status page lacks {want:?}:\n{body}");
        }
        assert_eq!(status_of(&[], &format!("http://{HOST}/nope")), "404");
        // ab counts a change of length as a failure: the page keeps one length as its
        // counters move.
        assert_eq!(
            ab(&["-n", "500", "-c", "16", "-k", &format!("http://{HOST}/")]),
            (500, 0)
        );
    });
}

#[test]
fn curl_files_head_404_keep_alive_and_no_way_out() {
    require_root!();
    serving_web_root("http-curl", "8080", |base| {
        // GET / is a generated listing of the root.
        let text = curl_text(&["-i", &format!("{base}/")]);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("href=\"big.bin\""), "{text}");
        assert!(text.contains("Date: "), "{text}");

        // A 3 MB random file, byte-exact.
        let body = curl_ok(&[&format!("{base}/big.bin")]);
        assert_eq!(body.len(), 3_000_000);
        assert!(body == pattern(3_000_000, 42), "big.bin differs");

        // A file in a subdirectory, with its type.
        let text = curl_text(&["-i", &format!("{base}/sub/page.html")]);
        assert!(text.contains("Content-Type: text/html"), "{text}");
        assert!(text.ends_with("\r\n\r\n<p>sub page</p>\n"), "{text}");

        assert_eq!(status_of(&[], &format!("{base}/missing.txt")), "404");

        // HEAD: the headers of a GET, no body.
        let text = curl_text(&["-I", &format!("{base}/big.bin")]);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Length: 3000000\r\n"), "{text}");
        assert!(text.contains("Last-Modified: "), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");

        // Keep-alive: curl reuses one connection for two URLs.
        let (code, body, err) = curl(&[
            "-v",
            &format!("{base}/hello.txt"),
            &format!("{base}/sub/page.html"),
        ]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(body, b"hello\n<p>sub page</p>\n");
        assert!(
            err.contains("Re-using existing connection") || err.contains("Reusing existing"),
            "curl did not reuse the connection:\n{err}"
        );
        assert_eq!(err.matches("Connected to").count(), 1, "{err}");

        // No way out of the root, however it is spelled.
        for (flags, path) in [
            (&["--path-as-is"][..], "/../secret.txt"),
            (&["--path-as-is"][..], "/sub/../../secret.txt"),
            (&[][..], "/sub%2f..%2f..%2fsecret.txt"),
            (&[][..], "/%2e%2e/secret.txt"),
            (&["--path-as-is"][..], "/sub/..%5c..%5csecret.txt"),
            (&[][..], "/escape"),
        ] {
            let mut args = flags.to_vec();
            let url = format!("{base}{path}");
            args.push(&url);
            let text = curl_text(&args);
            assert!(!text.contains("TOP SECRET"), "{path} escaped the root");
            let status = status_of(flags, &url);
            assert!(status == "403" || status == "404", "{path}: {status}");
        }
    });
}

/// Run ab and return (complete, failed) requests.
fn ab(args: &[&str]) -> (u64, u64) {
    let mut argv = vec!["timeout", "120", "ab", "-q", "-s", "20"];
    argv.extend_from_slice(args);
    let out = run(&argv);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ab {args:?} failed: {}\n{text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name:?} in ab's output:\n{text}"))
    };
    (field("Complete requests:"), field("Failed requests:"))
}

#[test]
fn ab_64_concurrent_with_and_without_keep_alive_has_no_failures() {
    require_root!();
    serving_web_root("http-ab", "80", |base| {
        let url = format!("{base}/hello.txt");
        assert_eq!(ab(&["-n", "4000", "-c", "64", "-k", &url]), (4000, 0));
        assert_eq!(ab(&["-n", "2000", "-c", "64", &url]), (2000, 0));
    });
}

/// Send raw bytes on a new connection and read until the server closes (10 s at most).
fn raw(port: u16, req: &[u8]) -> (String, Duration) {
    let mut s = TcpStream::connect((HOST, port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    s.write_all(req).unwrap();
    let mut back = Vec::new();
    let _ = s.read_to_end(&mut back);
    (String::from_utf8_lossy(&back).into_owned(), start.elapsed())
}

#[test]
fn malformed_oversized_and_stalled_requests() {
    require_root!();
    in_netns(|| {
        let _h = serve_http(&["--http", "80", "--http-idle-timeout", "1"]);
        let (r, _) = raw(80, b"NOT HTTP AT ALL\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
        let (r, _) = raw(80, b"DELETE / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(
            r.starts_with("HTTP/1.1 405 ") && r.contains("Allow: GET, HEAD\r\n"),
            "{r}"
        );
        let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(10_000));
        let (r, _) = raw(80, long.as_bytes());
        assert!(r.starts_with("HTTP/1.1 414 "), "{r}");
        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
            "a".repeat(20_000)
        );
        let (r, _) = raw(80, big.as_bytes());
        assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
        // Two pipelined requests, answered in order, then HTTP/1.0 closes.
        let (r, _) = raw(
            80,
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.0\r\n\r\n",
        );
        let a = r.find("HTTP/1.1 200 ").expect("first response");
        let b = r.find("HTTP/1.1 404 ").expect("second response");
        assert!(a < b, "{r}");
        // A client that stops mid-request is dropped after the idle timeout (1 s here).
        let (r, took) = raw(80, b"GET / HTTP/1.1\r\nHo");
        assert!(r.starts_with("HTTP/1.1 408 "), "{r}");
        assert!(took < Duration::from_secs(5), "closed after {took:?}");
    });
}

#[test]
fn http_server_example_serves_files() {
    require_root!();
    let bin = common::example("http_server");
    with_web_root("http-example", |root| {
        let _h = Tunhost::start_program(&bin, &[root], "http on ");
        let body = curl_ok(&[&format!("http://{HOST}/big.bin")]);
        assert!(body == pattern(3_000_000, 42), "big.bin differs");
    });
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

#[test]
fn big_files_stream_without_growing_memory() {
    require_root!();
    let dir = Scratch::new("http-stream");
    let www = dir.0.join("www");
    std::fs::create_dir_all(&www).unwrap();
    // 128 MiB, sparse: no disk needed, and reads are cheap.
    let f = std::fs::File::create(www.join("huge.bin")).unwrap();
    f.set_len(128 << 20).unwrap();
    drop(f);
    in_netns(|| {
        let h = serve_http(&["--http", "80", "--root", www.to_str().unwrap()]);
        let pid = h.pid().as_raw() as u32;
        let before = rss_kib(pid);
        let body = curl_ok(&[
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            &format!("http://{HOST}/huge.bin"),
        ]);
        assert_eq!(String::from_utf8_lossy(&body), (128u64 << 20).to_string());
        let after = rss_kib(pid);
        // A copy of the file would be 131072 KiB; allow socket buffers and allocator slack.
        assert!(
            after < before + 32 * 1024,
            "RSS grew from {before} KiB to {after} KiB serving 128 MiB"
        );
    });
}

/// `base/www` for the tests of what lies beneath the root: a file, a dotfile, a link to a file
/// outside (`link_secret.txt`, 7 bytes behind it), a link to a directory outside, a link inside,
/// and a file dated at the example time of RFC 9110 (Sun, 06 Nov 1994 08:49:37 GMT).
fn beneath_root(base: &Path) -> PathBuf {
    let www = base.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::create_dir_all(base.join("outdir")).unwrap();
    std::fs::write(www.join("hello.txt"), b"hello\n").unwrap();
    std::fs::write(www.join(".env"), b"API_KEY=hunter2\n").unwrap();
    std::fs::write(base.join("secret.txt"), b"SECRET\n").unwrap();
    std::fs::write(base.join("outdir/inner.txt"), b"OUTSIDE\n").unwrap();
    std::os::unix::fs::symlink(base.join("secret.txt"), www.join("link_secret.txt")).unwrap();
    std::os::unix::fs::symlink(base.join("outdir"), www.join("link_dir")).unwrap();
    std::os::unix::fs::symlink("hello.txt", www.join("link_hello.txt")).unwrap();
    let dated = std::fs::File::create(www.join("dated.txt")).unwrap();
    dated.set_len(3).unwrap();
    dated
        .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(784_111_777))
        .unwrap();
    www
}

/// Run `f` in a namespace of its own against `tunhost serve --http 80 --root base/www EXTRA...`
/// over a fresh [`beneath_root`]; `f` gets the base URL and `base`.
fn serving_beneath_root(test: &str, extra: &[&str], f: impl FnOnce(&str, &Path) + Send) {
    let dir = Scratch::new(test);
    let www = beneath_root(&dir.0);
    in_netns(|| {
        let mut args = vec!["--http", "80", "--root", www.to_str().unwrap()];
        args.extend_from_slice(extra);
        let _h = serve_http(&args);
        f(&format!("http://{HOST}"), &dir.0);
    });
}

/// The line of a listing that links to `name`.
fn listing_line<'a>(listing: &'a str, name: &str) -> Option<&'a str> {
    listing
        .lines()
        .find(|l| l.contains(&format!("<a href=\"{name}")))
}

#[test]
fn links_out_of_the_root_are_403_and_listed_without_what_lies_behind() {
    require_root!();
    serving_beneath_root("http-beneath", &[], |base, _| {
        for path in ["/link_secret.txt", "/link_dir/", "/link_dir/inner.txt"] {
            assert_eq!(status_of(&[], &format!("{base}{path}")), "403", "{path}");
            let (_, body, _) = curl(&[&format!("{base}{path}")]);
            let body = String::from_utf8_lossy(&body);
            assert!(
                !body.contains("SECRET") && !body.contains("OUTSIDE"),
                "{path}: {body}"
            );
        }
        // A link that stays inside the root is followed.
        assert_eq!(curl_ok(&[&format!("{base}/link_hello.txt")]), b"hello\n");

        let listing = curl_text(&[&format!("{base}/")]);
        let line = |name| listing_line(&listing, name).unwrap_or_else(|| panic!("{listing}"));
        assert!(line("hello.txt").contains("(6 bytes)"), "{listing}");
        assert!(line("link_hello.txt").contains("(6 bytes)"), "{listing}");
        // The link out is listed by name: no size of the file behind it...
        assert!(!line("link_secret.txt").contains("bytes"), "{listing}");
        // ... and a link to a directory outside is not shown as a directory.
        assert!(!listing.contains("link_dir/"), "{listing}");
    });
}

#[test]
fn dotfiles_are_404_and_unlisted_unless_dotfiles() {
    require_root!();
    serving_beneath_root("http-dotfiles", &[], |base, _| {
        assert_eq!(status_of(&[], &format!("{base}/.env")), "404");
        assert_eq!(status_of(&[], &format!("{base}/%2eenv")), "404");
        let listing = curl_text(&[&format!("{base}/")]);
        assert!(!listing.contains(".env"), "{listing}");
        assert!(listing.contains("hello.txt"), "{listing}");
    });
    serving_beneath_root("http-dotfiles-on", &["--dotfiles"], |base, _| {
        assert_eq!(curl_ok(&[&format!("{base}/.env")]), b"API_KEY=hunter2\n");
        let listing = curl_text(&[&format!("{base}/")]);
        assert!(listing.contains("<a href=\".env\">"), "{listing}");
    });
}

/// Send `req` on a persistent connection and read one response framed by Content-Length:
/// (status, body).
fn keep_alive_get(s: &mut std::io::BufReader<TcpStream>, req: &[u8]) -> (u16, Vec<u8>) {
    use std::io::BufRead;
    s.get_mut().write_all(req).unwrap();
    let mut status = 0;
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        assert!(s.read_line(&mut line).unwrap() > 0, "closed mid-response");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(rest) = line.strip_prefix("HTTP/1.1 ") {
            status = rest[..3].parse().unwrap();
        } else if let Some(v) = line.strip_prefix("Content-Length: ") {
            len = v.parse().unwrap();
        }
    }
    let mut body = vec![0; len];
    s.read_exact(&mut body).unwrap();
    (status, body)
}

#[test]
fn a_link_swapped_in_and_out_never_serves_the_outside_file() {
    use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    require_root!();
    let dir = Scratch::new("http-swap");
    let www = beneath_root(&dir.0);
    // `box` is a directory inside the root and `swap` a link to a file inside; their
    // counterparts, exchanged with them atomically and back, lead outside.
    std::fs::create_dir_all(www.join("box")).unwrap();
    std::fs::write(www.join("box/f.txt"), b"INSIDE\n").unwrap();
    std::fs::write(www.join("inside.txt"), b"INSIDE\n").unwrap();
    std::fs::write(dir.0.join("outdir/f.txt"), b"SECRET\n").unwrap();
    std::os::unix::fs::symlink(dir.0.join("outdir"), www.join("box_out")).unwrap();
    std::os::unix::fs::symlink("inside.txt", www.join("swap")).unwrap();
    std::os::unix::fs::symlink(dir.0.join("secret.txt"), www.join("swap_out")).unwrap();
    let stop = AtomicBool::new(false);
    let swaps = AtomicU64::new(0);
    in_netns(|| {
        let _h = serve_http(&["--http", "80", "--root", www.to_str().unwrap()]);
        std::thread::scope(|scope| {
            // The swapper, for as long as the client runs (bounded by its count and time).
            scope.spawn(|| {
                let exchange = |a: &str, b: &str| {
                    renameat2(
                        AT_FDCWD,
                        &www.join(a),
                        AT_FDCWD,
                        &www.join(b),
                        RenameFlags::RENAME_EXCHANGE,
                    )
                    .unwrap()
                };
                while !stop.load(Ordering::Relaxed) {
                    exchange("box", "box_out");
                    exchange("swap", "swap_out");
                    swaps.fetch_add(1, Ordering::Relaxed);
                }
            });
            let s = TcpStream::connect((HOST, 80)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut s = std::io::BufReader::new(s);
            let start = Instant::now();
            let (mut inside, mut refused, mut leaked) = (0, 0, 0);
            for i in 0..2_000 {
                let path = if i % 2 == 0 { "/box/f.txt" } else { "/swap" };
                let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
                match keep_alive_get(&mut s, req.as_bytes()) {
                    (200, body) if body == b"INSIDE\n" => inside += 1,
                    (200, _) => leaked += 1,
                    (403 | 404, _) => refused += 1,
                    (other, _) => panic!("status {other}"),
                }
                if start.elapsed() > Duration::from_secs(60) {
                    break;
                }
            }
            stop.store(true, Ordering::Relaxed);
            assert_eq!(
                leaked, 0,
                "a file outside the root served {leaked} times ({inside} inside, {refused} refused)"
            );
            // Both sides of the swap were seen: the client raced the swapper.
            assert!(
                inside > 0 && refused > 0,
                "{inside} inside, {refused} refused"
            );
        });
    });
    assert!(swaps.into_inner() > 0);
}

#[test]
fn small_items_trailing_slash_long_names_head_400_and_old_dates() {
    require_root!();
    serving_beneath_root("http-small", &[], |base, _| {
        // A file is not a directory.
        assert_eq!(status_of(&[], &format!("{base}/hello.txt/")), "404");
        // A name longer than any file name can be (255 bytes) names nothing: 404, not 403.
        let long = "a".repeat(300);
        assert_eq!(status_of(&[], &format!("{base}/{long}")), "404");
        assert_eq!(status_of(&[], &format!("{base}/{long}/x")), "404");
        // A HEAD refused with 400 has a head only: the server's close ends the response.
        let (r, _) = raw(80, b"HEAD /hello.txt HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
        assert!(r.ends_with("\r\n\r\n"), "{r}");
        // If-Modified-Since in all three forms of RFC 9110, at and one second before the
        // file's time.
        for (since, want) in [
            ("Sun, 06 Nov 1994 08:49:37 GMT", "304"),
            ("Sunday, 06-Nov-94 08:49:37 GMT", "304"),
            ("Sun Nov  6 08:49:37 1994", "304"),
            ("Sunday, 06-Nov-94 08:49:36 GMT", "200"),
            ("Sun Nov  6 08:49:36 1994", "200"),
        ] {
            let h = format!("If-Modified-Since: {since}");
            assert_eq!(
                status_of(&["-H", &h], &format!("{base}/dated.txt")),
                want,
                "{since}"
            );
        }
    });
}
