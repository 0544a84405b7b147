// Package accepttest sets up the condition accept.Listener exists for: a
// process out of file descriptors. InChild runs a test again in a child
// process whose descriptor limit is lowered (so nothing else in the test
// binary runs short), and Exhaust takes every descriptor left until the
// test gives them back.
//
//	func TestSurvivesEMFILE(t *testing.T) {
//		if !accepttest.InChild(t, 256) {
//			return // the parent: the child's result is already reported
//		}
//		// ... start the server ...
//		fill := accepttest.Exhaust(t)
//		// ... connect: the server's accept fails with EMFILE ...
//		fill.ReleaseAll()
//		// ... the server accepts again ...
//	}
package accepttest

// envChild names the test a child process runs; set only in children.
const envChild = "PINWALL_ACCEPTTEST_CHILD"
