//! A hello program with no crates, so the rust template builds it offline.

fn main() {
    println!(
        "hello from rust on {}/{}",
        std::env::consts::OS,
        std::env::consts::ARCH
    );
}
