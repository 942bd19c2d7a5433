package runtime

import "time"

// PodPhase is Kubernetes' pod phase.
type PodPhase string

const (
	PodPending   PodPhase = "Pending"
	PodRunning   PodPhase = "Running"
	PodSucceeded PodPhase = "Succeeded"
	PodFailed    PodPhase = "Failed"
)

// Waiting reasons the runtime sets (Kubernetes' names).
const (
	ReasonContainerCreating = "ContainerCreating"
	ReasonPodInitializing   = "PodInitializing"
	ReasonErrImagePull      = "ErrImagePull"
	ReasonImagePullBackOff  = "ImagePullBackOff"
	ReasonInvalidImageName  = "InvalidImageName"
	ReasonErrImageNeverPull = "ErrImageNeverPull"
	ReasonCrashLoopBackOff  = "CrashLoopBackOff"
	ReasonCreateError       = "CreateContainerError"
)

// Terminated reasons.
const (
	ReasonCompleted = "Completed"
	ReasonError     = "Error"
	ReasonOOMKilled = "OOMKilled"
	// ReasonUnknown: the container exited while no runtime process was its
	// parent (after an agent restart), so its exit code was not observable.
	ReasonUnknown = "ContainerStatusUnknown"
)

// StateWaiting: not running yet (or between restarts).
type StateWaiting struct {
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// StateRunning: started at StartedAt.
type StateRunning struct {
	StartedAt time.Time `json:"startedAt"`
}

// StateTerminated: exited.
type StateTerminated struct {
	ExitCode   int32     `json:"exitCode"`
	Signal     int32     `json:"signal,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	Message    string    `json:"message,omitempty"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt"`
}

// ContainerState: exactly one is set.
type ContainerState struct {
	Waiting    *StateWaiting    `json:"waiting,omitempty"`
	Running    *StateRunning    `json:"running,omitempty"`
	Terminated *StateTerminated `json:"terminated,omitempty"`
}

// ContainerStatus is Kubernetes' ContainerStatus plus the host PID.
type ContainerStatus struct {
	Name                 string         `json:"name"`
	State                ContainerState `json:"state"`
	LastTerminationState ContainerState `json:"lastState"`
	Ready                bool           `json:"ready"`
	Started              bool           `json:"started"`
	RestartCount         int32          `json:"restartCount"`
	Image                string         `json:"image"`
	ImageID              string         `json:"imageID,omitempty"`
	ContainerID          string         `json:"containerID,omitempty"`
	// PID of the container's init on the host (0 when not running).
	PID int `json:"pid,omitempty"`
}

// PodStatus is the node's view of a pod.
type PodStatus struct {
	UID   string   `json:"uid"`
	Phase PodPhase `json:"phase"`
	// Ready: every app container is running and ready (the Ready condition).
	Ready bool `json:"ready"`
	// Initialized: all init containers completed.
	Initialized           bool              `json:"initialized"`
	PodIP                 string            `json:"podIP,omitempty"`
	Message               string            `json:"message,omitempty"`
	StartTime             time.Time         `json:"startTime"`
	InitContainerStatuses []ContainerStatus `json:"initContainerStatuses,omitempty"`
	ContainerStatuses     []ContainerStatus `json:"containerStatuses"`
}
