package kernel

// TaskMM is a task's address space (struct mm_struct): its shared file
// mappings.
type TaskMM struct {
	t    *Task
	vmas []*VMA
}

// VMA is one mapping (struct vm_area_struct). It holds a reference to its
// file (vm_file) for its whole life.
type VMA struct {
	mm    *TaskMM
	File  *File
	Start uint64 // virtual address
	Len   uint64
	PgOff uint64 // file offset / PageSize
	Prot  int
	Flags int
}

func newTaskMM(t *Task) *TaskMM { return &TaskMM{t: t} }

// VMAs returns the task's mappings in creation order.
func (mm *TaskMM) VMAs() []*VMA { return mm.vmas }

// exitMMap unmaps everything (exit_mmap).
func (mm *TaskMM) exitMMap() {
	for len(mm.vmas) > 0 {
		mm.unmapVMA(mm.vmas[len(mm.vmas)-1])
	}
}
