package federation

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/mlshome/homeserver/identity"
)

// PinFile is the name of the pinned-key file in [KeyStoreConfig.PinDir].
// It is JSON:
//
//	{"version":1,"pins":{"<domain>":{"key":"<base64>","pinned_ms":…,"checked_ms":…,"changed":"<base64>"}}}
//
// "changed" is present when the domain published another key after the
// pin; the domain is refused until the entry is removed ([KeyStore.Unpin],
// or by editing the file while the homeserver is stopped).
const PinFile = "federation-pins.json"

const pinFileVersion = 1

// pin is a pinned key as stored.
type pin struct {
	Key       ed25519.PublicKey `json:"key"`
	PinnedMs  int64             `json:"pinned_ms"`
	CheckedMs int64             `json:"checked_ms"`
	Changed   ed25519.PublicKey `json:"changed,omitempty"`
}

type pinFile struct {
	Version int             `json:"version"`
	Pins    map[string]*pin `json:"pins"`
}

func loadPins(dir string) (map[string]*pin, error) {
	path := filepath.Join(dir, PinFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return make(map[string]*pin), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read pins: %w", err)
	}
	var f pinFile
	if err := strictUnmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if f.Version != pinFileVersion {
		return nil, fmt.Errorf("%s: version %d, want %d", path, f.Version, pinFileVersion)
	}
	if f.Pins == nil {
		f.Pins = make(map[string]*pin)
	}
	for d, p := range f.Pins {
		if err := identity.ValidateDomain(d); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if p == nil || len(p.Key) != ed25519.PublicKeySize || (p.Changed != nil && len(p.Changed) != ed25519.PublicKeySize) {
			return nil, fmt.Errorf("%s: bad key for %s", path, d)
		}
	}
	return f.Pins, nil
}

// persist writes the pins atomically (temporary file, fsync, rename).
func (k *KeyStore) persist() error {
	if k.cfg.PinDir == "" {
		return nil
	}
	k.persistMu.Lock()
	defer k.persistMu.Unlock()
	k.mu.Lock()
	f := pinFile{Version: pinFileVersion, Pins: make(map[string]*pin, len(k.pins))}
	for d, p := range k.pins {
		c := *p
		f.Pins[d] = &c
	}
	k.mu.Unlock()
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encode pins: %w", err)
	}
	if err := os.MkdirAll(k.cfg.PinDir, 0o700); err != nil {
		return fmt.Errorf("pin dir: %w", err)
	}
	return writeFileAtomic(filepath.Join(k.cfg.PinDir, PinFile), append(data, '\n'))
}

// writeFileAtomic replaces path with data so that a reader or a crash sees
// either the old or the new content.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the rename durable; best effort where unsupported
		d.Close()
	}
	return nil
}

func sortPins(p []PinInfo) {
	slices.SortFunc(p, func(a, b PinInfo) int { return strings.Compare(a.Domain, b.Domain) })
}
