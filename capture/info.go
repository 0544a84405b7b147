package capture

// Info is what an evidence file (a run's, the probe's) says about a
// capture in its bundle.
type Info struct {
	// File and KeyLog are the capture and its key log, relative to the bundle.
	File   string `json:"file"`
	KeyLog string `json:"key_log"`
	// Packets counts the packets; Dropped those beyond the memory limit.
	Packets int   `json:"packets"`
	Dropped int64 `json:"dropped"`
	// KeyLines counts the session secrets, inside the capture (its
	// Decryption Secrets Block) and in KeyLog.
	KeyLines int `json:"key_lines"`
	// SnapLen is the payload kept per flow and direction; negative: all.
	SnapLen int `json:"snaplen"`
	// Legs names the capture's interfaces in order.
	Legs []string `json:"legs"`
	// Source says how the packets were made.
	Source string `json:"source"`
}
