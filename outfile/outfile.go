// Package outfile writes the files pinwall leaves for people to read —
// evidence bundles (run --out), the lab's logs and CA certificates (lab
// --dir), docker-compose projects (compose --dir), the node's output in a
// container, serve's --log-file — without ever writing through a link
// someone planted there.
//
// Every file is opened below a directory (an os.Root: openat with
// O_NOFOLLOW on every path component), so a symbolic link at the file's
// name or at any directory below the output directory is refused, whether
// it points outside the directory or not; so is a name that is not a
// regular file or that has other hard links. The output directory itself
// may be a symbolic link: the person running pinwall chose it. An existing
// file is truncated only after those checks, and takes the permissions
// asked for (Private for files holding private keys) even if it had others.
package outfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Permissions of the files pinwall writes.
const (
	// Public is for logs, reports and certificates.
	Public fs.FileMode = 0o644
	// Private is for anything holding a private key.
	Private fs.FileMode = 0o600
	// DirPerm is for the directories pinwall creates.
	DirPerm fs.FileMode = 0o755
)

// Reasons a file is refused.
var (
	// ErrSymlink: the name, or a directory on the way to it below the
	// output directory, is a symbolic link.
	ErrSymlink = errors.New("is a symbolic link")
	// ErrNotRegular: the name exists and is not a regular file.
	ErrNotRegular = errors.New("is not a regular file")
	// ErrLinked: the file has other hard links, so writing it would change
	// another name's contents too.
	ErrLinked = errors.New("has other hard links")
)

// Dir is an output directory. Its methods are safe for concurrent use.
type Dir struct {
	root *os.Root
}

// OpenDir creates dir (and its parents) if needed and opens it as an
// output directory. Close it when done.
func OpenDir(dir string) (*Dir, error) {
	if err := os.MkdirAll(dir, DirPerm); err != nil {
		return nil, fmt.Errorf("outfile: %w", err)
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("outfile: %w", err)
	}
	return &Dir{root: r}, nil
}

// Name returns the directory's path as given to OpenDir.
func (d *Dir) Name() string { return d.root.Name() }

// FS reads the files below d, never following a link out of it.
func (d *Dir) FS() fs.FS { return d.root.FS() }

// Close releases the directory.
func (d *Dir) Close() error { return d.root.Close() }

// MkdirAll creates the directory rel (slash or OS separators) below d,
// refusing a symbolic link on the way.
func (d *Dir) MkdirAll(rel string) error {
	rel = filepath.Clean(filepath.FromSlash(rel))
	if rel == "." {
		return nil
	}
	if err := d.checkNoLinks(rel, true); err != nil {
		return err
	}
	if err := d.root.MkdirAll(rel, DirPerm); err != nil {
		return fmt.Errorf("outfile: %w", err)
	}
	return nil
}

// checkNoLinks refuses rel if it or a directory on its way is a symbolic
// link; components that do not exist yet are fine.
func (d *Dir) checkNoLinks(rel string, lastIsDir bool) error {
	if filepath.IsAbs(rel) || !filepath.IsLocal(rel) {
		return d.refuse(rel, errors.New("is not a name below the output directory"))
	}
	p := ""
	for _, part := range splitPath(rel) {
		p = filepath.Join(p, part)
		fi, err := d.root.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("outfile: %w", err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return d.refuse(p, ErrSymlink)
		}
		switch {
		case p != rel || lastIsDir:
			if !fi.IsDir() {
				return d.refuse(p, errors.New("is not a directory"))
			}
		case !fi.Mode().IsRegular():
			return d.refuse(p, ErrNotRegular)
		}
	}
	return nil
}

func splitPath(rel string) []string {
	return strings.Split(filepath.ToSlash(rel), "/")
}

func (d *Dir) refuse(rel string, why error) error {
	return &fs.PathError{Op: "outfile: refusing to write", Path: filepath.Join(d.root.Name(), rel), Err: why}
}

// Create creates or truncates the file rel below d (creating its
// directories) for writing with permissions perm. It refuses a symbolic
// link, a name that is not a regular file, or a file with other hard
// links, before truncating anything.
func (d *Dir) Create(rel string, perm fs.FileMode) (*os.File, error) {
	return d.open(rel, perm, false)
}

// Append opens the file rel below d for appending, creating it (and its
// directories) if needed, with the checks Create makes: what a process
// restarted in the same place adds to what it wrote before.
func (d *Dir) Append(rel string, perm fs.FileMode) (*os.File, error) {
	return d.open(rel, perm, true)
}

func (d *Dir) open(rel string, perm fs.FileMode, appending bool) (*os.File, error) {
	rel = filepath.Clean(filepath.FromSlash(rel))
	if err := d.checkNoLinks(rel, false); err != nil {
		return nil, err
	}
	if dir := filepath.Dir(rel); dir != "." {
		if err := d.root.MkdirAll(dir, DirPerm); err != nil {
			return nil, fmt.Errorf("outfile: %w", err)
		}
	}
	// Not O_TRUNC: nothing is cut before the checks below. The root opens
	// every component with O_NOFOLLOW; checkNoLinks refused links that
	// stay inside it.
	flags := os.O_WRONLY | os.O_CREATE
	if appending {
		flags |= os.O_APPEND
	}
	f, err := d.root.OpenFile(rel, flags, perm)
	if err != nil {
		return nil, fmt.Errorf("outfile: %w", err)
	}
	if err := check(f); err != nil {
		f.Close()
		return nil, d.refuse(rel, err)
	}
	if !appending {
		if err := f.Truncate(0); err != nil {
			f.Close()
			return nil, fmt.Errorf("outfile: %w", err)
		}
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return nil, fmt.Errorf("outfile: %w", err)
	}
	return f, nil
}

// WriteFile writes data to the file rel below d, as Create does.
func (d *Dir) WriteFile(rel string, data []byte, perm fs.FileMode) error {
	f, err := d.Create(rel, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("outfile: %w", err)
	}
	return nil
}

// Remove removes the file or empty directory rel below d, never following
// a link.
func (d *Dir) Remove(rel string) error {
	return d.root.Remove(filepath.Clean(filepath.FromSlash(rel)))
}

// ReadDir lists the directory rel below d, refusing a link on the way.
func (d *Dir) ReadDir(rel string) ([]fs.DirEntry, error) {
	rel = filepath.Clean(filepath.FromSlash(rel))
	if err := d.checkNoLinks(rel, true); err != nil {
		return nil, err
	}
	return fs.ReadDir(d.root.FS(), filepath.ToSlash(rel))
}

// check refuses an open file that is not a regular file with one link.
func check(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return ErrNotRegular
	}
	if links(fi) > 1 {
		return ErrLinked
	}
	return nil
}

// Create creates or truncates the single file path for writing, as
// Dir.Create does below path's directory (which must exist).
func Create(path string, perm fs.FileMode) (*os.File, error) {
	r, err := os.OpenRoot(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("outfile: %w", err)
	}
	defer r.Close()
	d := &Dir{root: r}
	return d.Create(filepath.Base(path), perm)
}

// Append opens the single file path for appending, as Dir.Append does
// below path's directory (which must exist).
func Append(path string, perm fs.FileMode) (*os.File, error) {
	r, err := os.OpenRoot(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("outfile: %w", err)
	}
	defer r.Close()
	return (&Dir{root: r}).Append(filepath.Base(path), perm)
}

// WriteFile writes data to the single file path, as Create does.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	r, err := os.OpenRoot(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("outfile: %w", err)
	}
	defer r.Close()
	return (&Dir{root: r}).WriteFile(filepath.Base(path), data, perm)
}
