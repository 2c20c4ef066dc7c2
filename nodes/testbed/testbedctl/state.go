package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

const stateName = "testbed.json"

// state is what up leaves in DIR for down (and for humans).
type state struct {
	Prefix string
	Dir    string
	Nodes  []nodeState
	// Created lists the files and directories up made, which down removes.
	Created []string
	// CreatedDir: up made Dir itself, so down removes it if empty.
	CreatedDir bool
}

type nodeState struct {
	Name string
	IP   string
	PID  int
}

func statePath(dir string) string { return filepath.Join(dir, stateName) }

func (s state) save() error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(statePath(s.Dir), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

func loadState(dir string) (state, error) {
	data, err := os.ReadFile(statePath(dir))
	if err != nil {
		return state{}, err
	}
	var s state
	if err := json.Unmarshal(data, &s); err != nil {
		return state{}, fmt.Errorf("%s: %w", statePath(dir), err)
	}
	return s, nil
}
