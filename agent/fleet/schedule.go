package fleet

import "github.com/reprov/reprov/inventory"

// scheduler picks the next node to start: round-robin over racks (in order
// of first appearance), each rack's nodes in inventory order, skipping
// racks at their limit. Nodes without a rack form one group that the rack
// limit does not apply to. It is used by Run's goroutine only.
type scheduler struct {
	racks   []*rackQueue
	byNode  []*rackQueue
	perRack int
	turn    int // index into racks of the rack whose turn is next
	started []bool
	pending int
}

type rackQueue struct {
	name     string
	nodes    []int // node indexes not yet started, in inventory order
	inFlight int
}

func newScheduler(nodes []inventory.Node, perRack int) *scheduler {
	s := &scheduler{perRack: perRack, byNode: make([]*rackQueue, len(nodes)),
		started: make([]bool, len(nodes)), pending: len(nodes)}
	byName := make(map[string]*rackQueue)
	for i, n := range nodes {
		q, ok := byName[n.Rack]
		if !ok {
			q = &rackQueue{name: n.Rack}
			byName[n.Rack] = q
			s.racks = append(s.racks, q)
		}
		q.nodes = append(q.nodes, i)
		s.byNode[i] = q
	}
	return s
}

// next returns the node to start now, or false when none may start (all
// started, or every rack with nodes left is at its limit).
func (s *scheduler) next() (int, bool) {
	if s.pending == 0 {
		return 0, false
	}
	for k := range s.racks {
		q := s.racks[(s.turn+k)%len(s.racks)]
		if len(q.nodes) == 0 || (s.perRack > 0 && q.name != "" && q.inFlight >= s.perRack) {
			continue
		}
		i := q.nodes[0]
		q.nodes = q.nodes[1:]
		q.inFlight++
		s.started[i] = true
		s.pending--
		s.turn = (s.turn + k + 1) % len(s.racks)
		return i, true
	}
	return 0, false
}

// finished records that node i is done, freeing its rack's slot.
func (s *scheduler) finished(i int) { s.byNode[i].inFlight-- }

// notStarted returns the nodes never started, in inventory order.
func (s *scheduler) notStarted() []int {
	var out []int
	for i, st := range s.started {
		if !st {
			out = append(out, i)
		}
	}
	return out
}
