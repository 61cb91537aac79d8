//! Output files are written whole or not at all: into a temporary file in
//! the destination's folder, renamed over the destination once complete.

use std::path::Path;

/// A temporary file in `dir` for an output, created with the mode a plain
/// `File::create` would give (0o666 less the umask), not the 0o600 of a
/// private temporary file, so the renamed output is readable as usual.
pub fn output_tempfile(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".sculpt-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir)
}
