package services

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gitreceive/gitreceive/internal/treepath"
	"github.com/gitreceive/gitreceive/names"
	"golang.org/x/sys/unix"
)

// files and writable_root: one directory per instance on every node that
// serves the app (Silver Lining's service.files and service.writable_root).
// The data is per node: nothing is copied between nodes.
//
//	files:         DataDir/files/APP/RESOURCE          INSTANCE:INSTANCE   0700  (CONFIG_FILES)
//	writable_root: DataDir/writable-root/APP/RESOURCE  INSTANCE:NginxGroup 02750 (CONFIG_WRITABLE_ROOT)
//
// INSTANCE is the instance's own user (Host.UserOf); nobody else can
// read or write its directories.
//
// nginx serves the writable root publicly after the release's static/
// (see nodes/agent's routing); the setgid bit hands the nginx group down to
// what the app creates in it.
//
// DataDir, DataDir/SUB and DataDir/SUB/APP are root's, so the app user can
// change nothing above its own directory: the node-side methods (run as
// root) trust those paths and take care below them, where the app writes:
// no symlink is followed there, and Restore builds the new tree in a
// directory only root can reach before it swaps it in.

func init() {
	register(dirService{name: "files", sub: "files", env: "CONFIG_FILES"})
	register(dirService{name: "writable_root", sub: "writable-root", env: "CONFIG_WRITABLE_ROOT", nginx: true})
}

// Limits of what CheckBackup and Restore accept.
const (
	// MaxFilesBackupSize bounds the total size of the regular files in one
	// backup of a files or writable_root directory.
	MaxFilesBackupSize = 10 << 30
	// maxFilesBackupEntries bounds the entries of one backup (each costs
	// memory while the archive is checked).
	maxFilesBackupEntries = 2_000_000
	// maxFilesPath bounds an entry's path and a symlink's target (PATH_MAX
	// less the NUL), maxFilesName one path component (NAME_MAX).
	maxFilesPath = 4095
	maxFilesName = 255
)

// dirService is files or writable_root.
type dirService struct {
	name  string // service name
	sub   string // directory under DataDir
	env   string // the variable that tells the app its directory
	nginx bool   // nginx reads it: group NginxGroup, setgid
}

var dirSubs = map[string]string{"files": "files", "writable_root": "writable-root"}

// Dir is the directory of inst's service ("files" or "writable_root") on a
// node with h.DataDir: DataDir/files/APP/RESOURCE or
// DataDir/writable-root/APP/RESOURCE. It is "" for another service or an
// app name that is not [a-z][a-z0-9-]*, so that no caller builds a path
// from one.
func Dir(h Host, service string, inst Instance) string {
	sub, ok := dirSubs[service]
	if !ok || !names.IsApp(inst.App) || h.DataDir == "" {
		return ""
	}
	return filepath.Join(h.DataDir, sub, inst.App, inst.Resource())
}

func (s dirService) Name() string                   { return s.name }
func (s dirService) Where() Where                   { return OnAppNodes }
func (s dirService) Packages() []string             { return nil }
func (s dirService) ClientPackages(string) []string { return nil }

func (s dirService) Env(inst Instance, c Credentials, host string, h Host) map[string]string {
	return map[string]string{s.env: Dir(h, s.name, inst)}
}

// dirOwner is who owns the instance's directory and everything in it, and the
// directory's own mode.
type dirOwner struct {
	uid, gid int
	dirMode  os.FileMode // the instance directory's mode
	setgid   bool        // directories inside get the setgid bit too
	name     string      // the owner's user name
}

func (s dirService) owner(h Host, inst Instance) (dirOwner, error) {
	name := h.AppUser
	if h.UserOf != nil {
		var err error
		if name, err = h.UserOf(inst); err != nil {
			return dirOwner{}, fmt.Errorf("%s: %w", s.name, err)
		}
	}
	if name == "" {
		return dirOwner{}, fmt.Errorf("%s: no app user given", s.name)
	}
	u, err := user.Lookup(name)
	if err != nil {
		return dirOwner{}, fmt.Errorf("%s: app user %s: %w", s.name, name, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return dirOwner{}, fmt.Errorf("%s: app user %s has uid %q, gid %q", s.name, name, u.Uid, u.Gid)
	}
	if uid == 0 {
		return dirOwner{}, fmt.Errorf("%s: app user %s is root; apps never run as root", s.name, name)
	}
	o := dirOwner{uid: uid, gid: gid, dirMode: 0o700, name: name}
	if s.nginx {
		if h.NginxGroup == "" {
			return dirOwner{}, fmt.Errorf("%s: no nginx group given", s.name)
		}
		g, err := user.LookupGroup(h.NginxGroup)
		if err != nil {
			return dirOwner{}, fmt.Errorf("%s: nginx group %s: %w", s.name, h.NginxGroup, err)
		}
		if o.gid, err = strconv.Atoi(g.Gid); err != nil {
			return dirOwner{}, fmt.Errorf("%s: nginx group %s has gid %q", s.name, h.NginxGroup, g.Gid)
		}
		o.dirMode = 0o750 | os.ModeSetgid
		o.setgid = true
	}
	return o, nil
}

// dir is inst's directory, or an error for an instance no directory can be
// made for.
func (s dirService) dir(h Host, inst Instance) (string, error) {
	if h.DataDir == "" || !filepath.IsAbs(h.DataDir) {
		return "", fmt.Errorf("%s: data directory %q is not an absolute path", s.name, h.DataDir)
	}
	d := Dir(h, s.name, inst)
	if d == "" {
		return "", fmt.Errorf("%s: app name %q is not [a-z][a-z0-9-]*", s.name, inst.App)
	}
	return d, nil
}

func dirSay(h Host, format string, args ...any) {
	if h.Output != nil {
		fmt.Fprintf(h.Output, format+"\n", args...)
	}
}

// ensureOwnedDir makes p a directory (not a symlink) owned by uid:gid with mode
// (permission and setgid bits), creating it when missing, and says whether
// it changed anything. It never looks inside.
func ensureOwnedDir(p string, uid, gid int, mode os.FileMode) (bool, error) {
	changed := false
	info, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return false, err
		}
		changed = true
	case err != nil:
		return false, err
	case info.Mode()&fs.ModeSymlink != 0:
		return false, fmt.Errorf("%s is a symlink; refusing to use it (remove it, then retry)", p)
	case !info.IsDir():
		return false, fmt.Errorf("%s exists and is not a directory; refusing to use it (move it away, then retry)", p)
	}
	// O_NOFOLLOW: whatever took p's place since the Lstat is not followed.
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("opening %s: %w", p, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, fmt.Errorf("%s: %w", p, err)
	}
	if int(st.Uid) != uid || int(st.Gid) != gid {
		if err := unix.Fchown(fd, uid, gid); err != nil {
			return false, fmt.Errorf("chown %s: %w", p, err)
		}
		changed = true
		// chown clears setgid on some file systems: read the mode again.
		if err := unix.Fstat(fd, &st); err != nil {
			return false, fmt.Errorf("%s: %w", p, err)
		}
	}
	want := uint32(mode.Perm())
	if mode&os.ModeSetgid != 0 {
		want |= unix.S_ISGID
	}
	if st.Mode&07777 != want {
		if err := unix.Fchmod(fd, want); err != nil {
			return false, fmt.Errorf("chmod %s: %w", p, err)
		}
		changed = true
	}
	return changed, nil
}

// ensureBase makes DataDir, DataDir/SUB and (with app) DataDir/SUB/APP:
// root's, 0755 (DataDir keeps its mode when it exists).
func (s dirService) ensureBase(h Host, app string) error {
	if h.DataDir == "" || !filepath.IsAbs(h.DataDir) {
		return fmt.Errorf("%s: data directory %q is not an absolute path", s.name, h.DataDir)
	}
	if err := os.MkdirAll(h.DataDir, 0o755); err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	dirs := []string{filepath.Join(h.DataDir, s.sub)}
	if app != "" {
		dirs = append(dirs, filepath.Join(h.DataDir, s.sub, app))
	}
	for _, d := range dirs {
		if _, err := ensureOwnedDir(d, 0, 0, 0o755); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return nil
}

func (s dirService) Install(ctx context.Context, h Host) error {
	return s.ensureBase(h, "")
}

func (s dirService) Provision(ctx context.Context, h Host, inst Instance, c Credentials) (string, error) {
	d, err := s.dir(h, inst)
	if err != nil {
		return "", err
	}
	o, err := s.owner(h, inst)
	if err != nil {
		return "", err
	}
	if err := s.ensureBase(h, inst.App); err != nil {
		return "", err
	}
	// A directory another user owns was made for the shared app user of
	// earlier versions: what is in it becomes the instance's too.
	var before unix.Stat_t
	moved := unix.Lstat(d, &before) == nil && int(before.Uid) != o.uid
	changed, err := ensureOwnedDir(d, o.uid, o.gid, o.dirMode)
	if err != nil {
		return "", fmt.Errorf("%s for %s: %w", s.name, inst, err)
	}
	if moved {
		if err := reownTree(d, o.uid, o.gid); err != nil {
			return "", fmt.Errorf("%s for %s: giving %s to %s: %w", s.name, inst, d, o.name, err)
		}
	}
	if changed {
		dirSay(h, "%s: %s owned by %s, mode %s", s.name, d, o.name, dirModeString(o.dirMode))
	}
	return "directory " + d + " ready", nil
}

// reownTree gives everything below dir to uid:gid without ever following a
// symlink or leaving dir (os.Root): the app may still be renaming things.
func reownTree(dir string, uid, gid int) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	return fs.WalkDir(root.FS(), ".", func(p string, _ fs.DirEntry, err error) error {
		if err != nil || p == "." {
			return err
		}
		return root.Lchown(p, uid, gid)
	})
}

func dirModeString(m os.FileMode) string {
	n := uint32(m.Perm())
	if m&os.ModeSetgid != 0 {
		n |= 0o2000
	}
	return fmt.Sprintf("%04o", n)
}

// openExisting opens inst's directory for reading, refusing a symlink or
// anything else in its place.
func (s dirService) openExisting(h Host, inst Instance) (string, *os.File, error) {
	d, err := s.dir(h, inst)
	if err != nil {
		return "", nil, err
	}
	fd, err := unix.Open(d, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		switch {
		case errors.Is(err, unix.ENOENT):
			return "", nil, fmt.Errorf("%s of %s: %s does not exist (not provisioned on this node?)", s.name, inst, d)
		case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR):
			return "", nil, fmt.Errorf("%s of %s: %s is not a directory (a symlink?); refusing to use it", s.name, inst, d)
		}
		return "", nil, fmt.Errorf("%s of %s: opening %s: %w", s.name, inst, d, err)
	}
	return d, os.NewFile(uintptr(fd), d), nil
}

// Backup writes a tar stream of the directory's contents: regular files,
// directories and symlinks (as symlinks: none is followed), with paths
// relative to the directory, permission bits and modification times, no
// owners (Restore gives everything to the app user). Sockets, FIFOs and
// devices the app made are skipped, and said so on h.Output.
func (s dirService) Backup(ctx context.Context, h Host, inst Instance, c Credentials, w io.Writer) error {
	d, f, err := s.openExisting(h, inst)
	if err != nil {
		return err
	}
	defer f.Close()
	var top unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &top); err != nil {
		return fmt.Errorf("%s backup of %s: %w", s.name, inst, err)
	}
	tw := tar.NewWriter(w)
	b := &dirServiceBackup{ctx: ctx, h: h, tw: tw, top: d, owner: top.Uid}
	if err := b.dir(f, ""); err != nil {
		return fmt.Errorf("%s backup of %s: %w", s.name, inst, err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("%s backup of %s: %w", s.name, inst, err)
	}
	return nil
}

type dirServiceBackup struct {
	ctx     context.Context
	h       Host
	tw      *tar.Writer
	top     string
	owner   uint32 // the directory's owner: what it holds is the instance's
	entries int
	size    int64
}

// notOwned says whether a regular file belongs to someone other than the
// directory's owner, and if so it is left out, said so. The backup runs as
// root and reads whatever it is given: a hard link the app made to a file
// it cannot read (root's /etc/shadow, another tenant's file) would
// otherwise come back, readable, in the backup. (Symlinks are stored as
// links, never followed; directories hold nothing of their own.)
func (b *dirServiceBackup) notOwned(p string, uid uint32) bool {
	if uid == b.owner {
		return false
	}
	dirSay(b.h, "backup: leaving out %s: it belongs to uid %d, not to the directory's owner (uid %d); a hard link to a file the app may not read?", b.display(p), uid, b.owner)
	return true
}

// dir writes the entries of the directory open as f, at rel ("" = the top).
// Everything is opened relative to its directory's descriptor with
// O_NOFOLLOW, so what the app renames or swaps for a symlink meanwhile
// makes the backup fail rather than read elsewhere.
func (b *dirServiceBackup) dir(f *os.File, rel string) error {
	names, err := f.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("reading %s: %w", b.display(rel), err)
	}
	slices.Sort(names)
	dfd := int(f.Fd())
	for _, name := range names {
		if err := b.ctx.Err(); err != nil {
			return err
		}
		p := name
		if rel != "" {
			p = rel + "/" + name
		}
		if len(p) > maxFilesPath {
			return fmt.Errorf("%s: path longer than %d bytes", b.display(p), maxFilesPath)
		}
		var st unix.Stat_t
		if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // removed meanwhile
			}
			return fmt.Errorf("%s: %w", b.display(p), err)
		}
		if b.entries++; b.entries > maxFilesBackupEntries {
			return fmt.Errorf("more than %d entries", maxFilesBackupEntries)
		}
		hdr := &tar.Header{
			Name:    p,
			Mode:    int64(st.Mode & 0o777),
			ModTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec),
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			cfd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("%s: %w", b.display(p), err)
			}
			child := os.NewFile(uintptr(cfd), b.display(p))
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
			err = b.tw.WriteHeader(hdr)
			if err == nil {
				err = b.dir(child, p)
			}
			child.Close()
			if err != nil {
				return err
			}
		case unix.S_IFREG:
			if b.notOwned(p, st.Uid) {
				b.entries--
				continue
			}
			if err := b.file(dfd, name, p, hdr); err != nil {
				return err
			}
		case unix.S_IFLNK:
			buf := make([]byte, maxFilesPath+1)
			n, err := unix.Readlinkat(dfd, name, buf)
			if err != nil {
				return fmt.Errorf("%s: %w", b.display(p), err)
			}
			if n > maxFilesPath {
				return fmt.Errorf("%s: symlink target longer than %d bytes", b.display(p), maxFilesPath)
			}
			hdr.Typeflag = tar.TypeSymlink
			hdr.Linkname = string(buf[:n])
			hdr.Mode = 0o777
			if err := b.tw.WriteHeader(hdr); err != nil {
				return err
			}
		default:
			dirSay(b.h, "backup: skipping %s: not a regular file, directory or symlink", b.display(p))
			b.entries--
		}
	}
	return nil
}

func (b *dirServiceBackup) file(dfd int, name, p string, hdr *tar.Header) error {
	// O_NONBLOCK: a FIFO swapped in since the stat does not hang the open.
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", b.display(p), err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return fmt.Errorf("%s: %w", b.display(p), err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return fmt.Errorf("%s changed into something other than a regular file during the backup; retry", b.display(p))
	}
	if b.notOwned(p, st.Uid) {
		// Swapped since the first stat: what is read is this
		// descriptor, so this is the check that counts.
		unix.Close(fd)
		return nil
	}
	if b.size += st.Size; b.size > MaxFilesBackupSize {
		unix.Close(fd)
		return fmt.Errorf("at %s: more than %d bytes of files, the most a backup holds", b.display(p), int64(MaxFilesBackupSize))
	}
	f := os.NewFile(uintptr(fd), b.display(p))
	defer f.Close()
	hdr.Typeflag = tar.TypeReg
	hdr.Size = st.Size
	hdr.Mode = int64(st.Mode & 0o777)
	hdr.ModTime = time.Unix(st.Mtim.Sec, st.Mtim.Nsec)
	if err := b.tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.CopyN(b.tw, f, st.Size)
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%s shrank from %d to %d bytes during the backup; retry", b.display(p), st.Size, n)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", b.display(p), err)
	}
	return nil
}

func (b *dirServiceBackup) display(rel string) string {
	if rel == "" {
		return b.top
	}
	return b.top + "/" + rel
}

// CheckBackup reads a backup to its end and refuses what Restore must not
// write: paths that are absolute, not clean, hold NUL or "..", or lie below
// a symlink or a file of the archive; entries other than regular files,
// directories and symlinks (hard links, devices, FIFOs, sparse files, ...);
// symlinks whose target is absolute or leads out of the directory
// (following the archive's other symlinks as the kernel would); duplicate
// entries; more than MaxFilesBackupSize bytes; an archive cut short.
func (s dirService) CheckBackup(r io.Reader) error {
	return checkFilesArchive(r, nil)
}

// filesArchiveEntry is what Restore writes for one entry that passed the check.
type filesArchiveEntry struct {
	hdr  *tar.Header
	name string    // clean, relative
	data io.Reader // a regular file's contents
}

func checkFilesArchive(r io.Reader, write func(filesArchiveEntry) error) error {
	_, err := walkFilesArchive(r, write)
	return err
}

// filesEntryKind is what a path in the archive is.
type filesEntryKind uint8

const (
	kindImplicitDir filesEntryKind = iota + 1 // a parent of an entry, not itself listed
	kindDir
	kindFile
	kindSymlink
)

// walkFilesArchive reads a tar stream, checking every entry and handing
// each but symlinks to write (when not nil) before the next is read. Once
// the whole stream has passed, it checks where the symlinks lead and
// returns them (name -> target).
func walkFilesArchive(r io.Reader, write func(filesArchiveEntry) error) (map[string]string, error) {
	cr := &filesCountingReader{r: r}
	tr := tar.NewReader(cr)
	kinds := map[string]filesEntryKind{}
	links := map[string]string{}
	var total int64
	var entries int
	var dataEnd int64 // where the last entry's data ended in the stream
	last := "the start"
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			// A tar ends with two zero blocks after the last entry's
			// padded data; tar.Reader also says EOF when the stream just
			// stops between entries, which is a backup cut short.
			if cr.n-dataEnd < 1024 {
				return nil, fmt.Errorf("the archive ends without its end-of-archive marker (cut short after %d bytes?)", cr.n)
			}
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the archive after %s: %w", last, err)
		}
		name, err := checkEntry(hdr, kinds)
		if err != nil {
			return nil, err
		}
		if entries++; entries > maxFilesBackupEntries {
			return nil, fmt.Errorf("the archive has more than %d entries", maxFilesBackupEntries)
		}
		e := filesArchiveEntry{hdr: hdr, name: name}
		switch hdr.Typeflag {
		case tar.TypeReg:
			if total += hdr.Size; total > MaxFilesBackupSize {
				return nil, fmt.Errorf("entry %q: the archive's files exceed %d bytes, the most a backup may hold", hdr.Name, int64(MaxFilesBackupSize))
			}
			e.data = io.LimitReader(tr, hdr.Size)
		case tar.TypeSymlink:
			links[name] = hdr.Linkname
		}
		if write != nil {
			if err := write(e); err != nil {
				return nil, err
			}
		}
		// Read what write did not: a truncated entry shows here.
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return nil, fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
		dataEnd = cr.n
		last = fmt.Sprintf("entry %q", hdr.Name)
	}
	for _, name := range slices.Sorted(maps.Keys(links)) {
		if err := checkSymlinkTarget(name, links); err != nil {
			return nil, err
		}
	}
	return links, nil
}

type filesCountingReader struct {
	r io.Reader
	n int64
}

func (c *filesCountingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// checkEntry checks one header against the entries before it (kinds,
// which it updates) and returns the entry's clean relative name.
func checkEntry(hdr *tar.Header, kinds map[string]filesEntryKind) (string, error) {
	if err := checkEntryTypeAndSize(hdr); err != nil {
		return "", err
	}
	name, top, err := cleanEntryName(hdr)
	if err != nil || top {
		return "", err
	}
	if err := checkEntryPlace(hdr, name, kinds); err != nil {
		return "", err
	}
	if hdr.Typeflag == tar.TypeSymlink {
		if err := checkSymlinkEntry(hdr); err != nil {
			return "", err
		}
	}
	return name, nil
}

// badEntry is an error about the archive entry hdr.
func badEntry(hdr *tar.Header, format string, args ...any) error {
	return fmt.Errorf("entry %q: "+format, append([]any{hdr.Name}, args...)...)
}

// checkEntryTypeAndSize refuses what a backup does not hold: links, devices,
// FIFOs, sparse files, and sizes out of bounds.
func checkEntryTypeAndSize(hdr *tar.Header) error {
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink:
	case tar.TypeLink:
		return badEntry(hdr, "is a hard link (to %q); a backup holds only regular files, directories and symlinks", hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock:
		return badEntry(hdr, "is a device; a backup holds only regular files, directories and symlinks")
	case tar.TypeFifo:
		return badEntry(hdr, "is a FIFO; a backup holds only regular files, directories and symlinks")
	default:
		return badEntry(hdr, "has type %q; a backup holds only regular files, directories and symlinks", hdr.Typeflag)
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return badEntry(hdr, "is a sparse file; a backup holds only plain regular files")
		}
	}
	if hdr.Size < 0 || hdr.Typeflag != tar.TypeReg && hdr.Size != 0 {
		return badEntry(hdr, "has size %d", hdr.Size)
	}
	if hdr.Size > MaxFilesBackupSize {
		return badEntry(hdr, "claims %d bytes, more than the %d a backup may hold", hdr.Size, int64(MaxFilesBackupSize))
	}
	return nil
}

// cleanEntryName is the entry's path relative to the top directory; top
// is set for the top directory itself.
func cleanEntryName(hdr *tar.Header) (name string, top bool, err error) {
	name = hdr.Name
	if strings.ContainsRune(name, 0) {
		return "", false, badEntry(hdr, "has a NUL in its path")
	}
	if strings.HasPrefix(name, "/") {
		return "", false, badEntry(hdr, "has an absolute path")
	}
	name = strings.TrimPrefix(name, "./")
	if hdr.Typeflag == tar.TypeDir {
		name = strings.TrimSuffix(name, "/")
	}
	if name == "" || name == "." {
		if hdr.Typeflag == tar.TypeDir {
			return "", true, nil // the top directory: its owner and mode are the service's
		}
		return "", false, badEntry(hdr, "has an empty path")
	}
	if len(name) > maxFilesPath {
		return "", false, badEntry(hdr, "has a path longer than %d bytes", maxFilesPath)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", false, badEntry(hdr, "has a \"..\" component")
		}
		if len(part) > maxFilesName {
			return "", false, badEntry(hdr, "has a component longer than %d bytes", maxFilesName)
		}
	}
	if path.Clean(name) != name {
		return "", false, badEntry(hdr, "has a path that is not clean (empty or \".\" components, a trailing slash)")
	}
	return name, false, nil
}

// checkEntryPlace checks name against the entries before it: every parent
// is a directory of the archive (listed or implied), and no path comes
// twice. It records name's kind in kinds.
func checkEntryPlace(hdr *tar.Header, name string, kinds map[string]filesEntryKind) error {
	for i := 0; i < len(name); i++ {
		if name[i] != '/' {
			continue
		}
		parent := name[:i]
		switch kinds[parent] {
		case 0:
			kinds[parent] = kindImplicitDir
		case kindFile:
			return badEntry(hdr, "lies below %q, a regular file of the archive", parent)
		case kindSymlink:
			return badEntry(hdr, "lies below %q, a symlink of the archive; restoring it would write through the symlink", parent)
		}
	}
	kind := map[byte]filesEntryKind{tar.TypeReg: kindFile, tar.TypeDir: kindDir, tar.TypeSymlink: kindSymlink}[hdr.Typeflag]
	switch prev := kinds[name]; {
	case prev == 0:
	case prev == kindImplicitDir && kind == kindDir:
		// Listed after something inside it: unusual, harmless.
	case prev == kindImplicitDir:
		return badEntry(hdr, "comes after entries below it, but is not a directory")
	default:
		return badEntry(hdr, "appears twice in the archive")
	}
	kinds[name] = kind
	return nil
}

// checkSymlinkEntry checks a symlink's target on its own; where it leads
// is checkSymlinkTarget's, once every link is known.
func checkSymlinkEntry(hdr *tar.Header) error {
	t := hdr.Linkname
	switch {
	case t == "":
		return badEntry(hdr, "is a symlink with an empty target")
	case strings.ContainsRune(t, 0):
		return badEntry(hdr, "is a symlink whose target holds NUL")
	case strings.HasPrefix(t, "/"):
		return badEntry(hdr, "is a symlink to the absolute path %q; only relative targets inside the directory are restored", t)
	case len(t) > maxFilesPath:
		return badEntry(hdr, "is a symlink whose target is longer than %d bytes", maxFilesPath)
	}
	return nil
}

// checkSymlinkTarget follows symlink name (relative to the top directory)
// as the kernel would, through the archive's other symlinks, and refuses it
// when it leads above the top directory at any step or does not resolve
// within treepath.MaxHops symlinks. Paths that are not in the archive count
// as directories, so a dangling link is fine as long as it would stay
// inside.
func checkSymlinkTarget(name string, links map[string]string) error {
	_, err := treepath.Resolve(path.Dir(name), links[name], func(p string) (string, bool) {
		t, ok := links[p]
		return t, ok
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, treepath.ErrLoop):
		return fmt.Errorf("entry %q: symlink to %q goes through more than %d symlinks (a loop?)", name, links[name], treepath.MaxHops)
	default:
		return fmt.Errorf("entry %q: symlink to %q leads out of the directory", name, links[name])
	}
}

// Restore replaces the directory's contents with a backup. It builds the
// new tree in a fresh directory beside the instance's (root's, mode 0700,
// so the app cannot touch it meanwhile), checking every entry as
// CheckBackup does and creating symlinks only once everything else is
// written (so no write goes through one), then gives it to the app user
// and swaps it in with two renames. A failure at any point leaves the old
// data as it was.
func (s dirService) Restore(ctx context.Context, h Host, inst Instance, c Credentials, r io.Reader) error {
	d, err := s.dir(h, inst)
	if err != nil {
		return err
	}
	o, err := s.owner(h, inst)
	if err != nil {
		return err
	}
	if err := s.ensureBase(h, inst.App); err != nil {
		return err
	}
	switch info, err := os.Lstat(d); {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("%s restore of %s: %w", s.name, inst, err)
	case !info.IsDir():
		return fmt.Errorf("%s restore of %s: %s is not a directory (a symlink?); refusing to replace it", s.name, inst, d)
	}
	parent := filepath.Dir(d)
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(d)+".restore-")
	if err != nil {
		return fmt.Errorf("%s restore of %s: %w", s.name, inst, err)
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	if err := extractFilesArchive(ctx, tmp, r, o); err != nil {
		return fmt.Errorf("%s restore of %s: %w (nothing was changed)", s.name, inst, err)
	}
	if _, err := ensureOwnedDir(tmp, o.uid, o.gid, o.dirMode); err != nil {
		return fmt.Errorf("%s restore of %s: %w (nothing was changed)", s.name, inst, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s restore of %s: %w (nothing was changed)", s.name, inst, err)
	}
	old := tmp + ".old"
	hadOld := true
	if err := os.Rename(d, old); errors.Is(err, fs.ErrNotExist) {
		hadOld = false
	} else if err != nil {
		return fmt.Errorf("%s restore of %s: moving the old data aside: %w (nothing was changed)", s.name, inst, err)
	}
	if err := os.Rename(tmp, d); err != nil {
		if hadOld {
			if err2 := os.Rename(old, d); err2 != nil {
				return fmt.Errorf("%s restore of %s: %w; and putting the old data back from %s failed: %v", s.name, inst, err, old, err2)
			}
		}
		return fmt.Errorf("%s restore of %s: %w (nothing was changed)", s.name, inst, err)
	}
	done = true
	if hadOld {
		if err := os.RemoveAll(old); err != nil {
			dirSay(h, "%s: restored %s, but removing the old data in %s failed: %v", s.name, d, old, err)
		}
	}
	dirSay(h, "%s: restored %s", s.name, d)
	return nil
}

// extractFilesArchive writes the archive into the empty directory top, through
// an os.Root (nothing lands outside top), then sets owners, modes and
// times.
func extractFilesArchive(ctx context.Context, top string, r io.Reader, o dirOwner) error {
	root, err := os.OpenRoot(top)
	if err != nil {
		return err
	}
	defer root.Close()
	x := &filesExtraction{ctx: ctx, root: root, owner: o, dirs: map[string]int{}, linkTimes: map[string]time.Time{}}
	links, err := walkFilesArchive(r, x.write)
	if err != nil {
		return err
	}
	if err := x.symlinks(links); err != nil {
		return err
	}
	return x.finish()
}

// filesExtraction is extractFilesArchive's state: what it made, to be
// given owners, modes and times at the end.
type filesExtraction struct {
	ctx       context.Context
	root      *os.Root
	owner     dirOwner
	all       []madeEntry
	dirs      map[string]int // index in all
	linkTimes map[string]time.Time
}

// madeEntry is a directory or regular file extractFilesArchive made.
type madeEntry struct {
	name  string
	dir   bool
	mode  os.FileMode
	mtime time.Time
}

// mkdirs makes the directory name and its parents, parents first: they
// may be implied.
func (x *filesExtraction) mkdirs(name string) error {
	parts := strings.Split(name, "/")
	for i := 1; i <= len(parts); i++ {
		p := strings.Join(parts[:i], "/")
		if _, ok := x.dirs[p]; ok {
			continue
		}
		if err := x.root.Mkdir(p, 0o700); err != nil {
			return fmt.Errorf("entry %q: %w", name, err)
		}
		x.dirs[p] = len(x.all)
		x.all = append(x.all, madeEntry{name: p, dir: true, mode: 0o750})
	}
	return nil
}

// mkParent makes the directory name lies in, unless it is the top.
func (x *filesExtraction) mkParent(name string) error {
	if d := path.Dir(name); d != "." {
		return x.mkdirs(d)
	}
	return nil
}

// write extracts one checked entry, as walkFilesArchive hands it over.
func (x *filesExtraction) write(e filesArchiveEntry) error {
	if err := x.ctx.Err(); err != nil {
		return err
	}
	if e.name == "" {
		return nil // the top directory
	}
	switch e.hdr.Typeflag {
	case tar.TypeDir:
		if err := x.mkdirs(e.name); err != nil {
			return err
		}
		i := x.dirs[e.name]
		x.all[i].mode, x.all[i].mtime = os.FileMode(e.hdr.Mode)&0o777, e.hdr.ModTime
	case tar.TypeReg:
		if err := x.mkParent(e.name); err != nil {
			return err
		}
		f, err := x.root.OpenFile(e.name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("entry %q: %w", e.hdr.Name, err)
		}
		_, err = io.Copy(f, e.data)
		if closeErr := f.Close(); err == nil {
			err = closeErr
		}
		if err != nil {
			return fmt.Errorf("entry %q: %w", e.hdr.Name, err)
		}
		x.all = append(x.all, madeEntry{name: e.name, mode: os.FileMode(e.hdr.Mode) & 0o777, mtime: e.hdr.ModTime})
	case tar.TypeSymlink:
		// Made last, once every target is checked.
		x.linkTimes[e.name] = e.hdr.ModTime
	}
	return nil
}

// symlinks makes the archive's symlinks, last and all checked: nothing is
// written through them.
func (x *filesExtraction) symlinks(links map[string]string) error {
	for _, name := range slices.Sorted(maps.Keys(links)) {
		if err := x.mkParent(name); err != nil {
			return err
		}
		if err := x.root.Symlink(links[name], name); err != nil {
			return fmt.Errorf("entry %q: %w", name, err)
		}
		if err := x.root.Lchown(name, x.owner.uid, x.owner.gid); err != nil {
			return fmt.Errorf("entry %q: %w", name, err)
		}
		if err := lchtimes(x.root, name, x.linkTimes[name]); err != nil {
			return fmt.Errorf("entry %q: %w", name, err)
		}
	}
	return nil
}

// finish sets owners, modes and times, deepest first so that a
// directory's time is set after everything in it.
func (x *filesExtraction) finish() error {
	slices.SortStableFunc(x.all, func(a, b madeEntry) int { return strings.Count(b.name, "/") - strings.Count(a.name, "/") })
	for _, m := range x.all {
		if err := x.ctx.Err(); err != nil {
			return err
		}
		if err := x.root.Lchown(m.name, x.owner.uid, x.owner.gid); err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		mode := m.mode
		if m.dir && x.owner.setgid {
			mode |= os.ModeSetgid
		}
		if err := x.root.Chmod(m.name, mode); err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		if !m.mtime.IsZero() {
			if err := x.root.Chtimes(m.name, m.mtime, m.mtime); err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
		}
	}
	return nil
}

// lchtimes sets the times of the symlink name itself (os.Root has no
// Lchtimes): a restored tree then backs up to the same archive.
func lchtimes(root *os.Root, name string, t time.Time) error {
	if t.IsZero() {
		return nil
	}
	dir, err := root.Open(path.Dir(name))
	if err != nil {
		return err
	}
	defer dir.Close()
	ts := unix.NsecToTimespec(t.UnixNano())
	return unix.UtimesNanoAt(int(dir.Fd()), path.Base(name), []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

// Clear empties the directory and keeps it (with its owner and mode).
func (s dirService) Clear(ctx context.Context, h Host, inst Instance, c Credentials) error {
	d, f, err := s.openExisting(h, inst)
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s clear of %s: %w", s.name, inst, err)
	}
	// os.Root and RemoveAll work from directory descriptors and never
	// follow a symlink: a link the app left is removed, not its target.
	root, err := os.OpenRoot(d)
	if err != nil {
		return fmt.Errorf("%s clear of %s: %w", s.name, inst, err)
	}
	defer root.Close()
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := root.RemoveAll(name); err != nil {
			return fmt.Errorf("%s clear of %s: %w", s.name, inst, err)
		}
	}
	return nil
}

// Destroy removes the directory with everything in it, and the app's
// directory above it when that is left empty.
func (s dirService) Destroy(ctx context.Context, h Host, inst Instance, c Credentials) error {
	d, err := s.dir(h, inst)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(d); err != nil {
		return fmt.Errorf("%s destroy of %s: %w", s.name, inst, err)
	}
	// Only when empty; another instance's directory keeps it.
	if err := os.Remove(filepath.Dir(d)); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%s destroy of %s: %w", s.name, inst, err)
	}
	return nil
}
