// Command kstatus reads one Kubernetes object as JSON on stdin and prints
// what kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute) makes of
// it — the same computation Flux health checks and `kubectl wait`-style
// tooling rely on — as one JSON line: {"status": "Current", "message": "..."}.
//
// Built by hack/lib/build.sh into the strata cache; `hack/plane env` exports
// its path as STRATA_KSTATUS. Used by tests/gitops.rs.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: reading stdin: %v\n", err)
		os.Exit(2)
	}
	// UnmarshalJSON keeps integers int64, as client-go's dynamic client
	// does (encoding/json would make them float64, which kstatus refuses).
	object := &unstructured.Unstructured{}
	if err := object.UnmarshalJSON(input); err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: stdin is not a Kubernetes object: %v\n", err)
		os.Exit(2)
	}
	result, err := status.Compute(object)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: %v\n", err)
		os.Exit(1)
	}
	out, _ := json.Marshal(verdict{Status: result.Status.String(), Message: result.Message})
	fmt.Println(string(out))
}
