//! What Switchyard writes to disk is for its own user only: the data
//! directory holds the database (API key hashes, sealed trunk passwords and
//! webhook secrets), the secrets files and the recordings. Directories are
//! made 0700 and files 0600, whatever the umask the server was started with.

use std::path::Path;

/// Makes files and directories this process creates from now on private
/// (umask 077): SQLite's WAL and shared-memory files, object storage's
/// files and anything else created without an explicit mode. Called first
/// thing by the binary; the paths below are also made private explicitly,
/// for servers started inside another program (the tests).
pub fn restrict_umask() {
    #[cfg(unix)]
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
}

/// Creates `dir` (and missing parents) readable by this user only; an
/// existing directory that others can enter is narrowed to 0700.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                dir = %dir.display(),
                mode = format!("{:o}", mode & 0o777),
                "the data directory was open to other users; it is now 0700"
            );
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_new_or_open_directory_ends_up_0700() {
        let base = std::env::temp_dir().join(format!("sy-private-{}", uuid::Uuid::new_v4()));
        let dir = base.join("a/b");
        private_dir(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
