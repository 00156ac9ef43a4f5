package live

// What a space on air costs, and so how many one node keeps on air.
const (
	// spaceCPU is what one space on air with a full stage (13 speakers)
	// costs its node, in cores: its mixer's decodes, mix and encode, the
	// hand-over of the speakers' packets and the recorder, 0.026 of a core
	// on the development VM (BenchmarkSpaceOnAirCPU, docs/BENCHMARKS.md;
	// 0.006 with nobody on stage).
	spaceCPU = 0.026
	// mixerShare is the share of the node's cores that the mixers of the
	// spaces on air may take together. The rest is for what grows with
	// them but is not in spaceCPU (the stage forwarding speakers to each
	// other, encrypted, one socket write per packet and listening
	// speaker), for the listeners, who are many more, and for the gate.
	mixerShare = 0.25
)

// DefaultMaxLive returns how many spaces cpus cores keep on air at once,
// each with a full stage: mixerShare of the cores at spaceCPU a space, at
// least one. Two cores keep 19; sixteen, 153.
func DefaultMaxLive(cpus int) int {
	return max(1, int(float64(cpus)*mixerShare/spaceCPU))
}
