{{/* Names and labels shared by the templates. */}}
{{- define "streamedge.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "streamedge.peerService" -}}
{{- printf "%s-peers" (include "streamedge.fullname" .) -}}
{{- end -}}

{{- define "streamedge.keysSecret" -}}
{{- default (printf "%s-keys" (include "streamedge.fullname" .)) .Values.cluster.existingSecret -}}
{{- end -}}

{{- define "streamedge.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: edge
{{- end -}}

{{- define "streamedge.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "streamedge.image" -}}
{{- printf "%s:%s" .image.repository (default .chart.AppVersion .image.tag) -}}
{{- end -}}

{{- define "streamedge.needsKeys" -}}
{{- if or .Values.cluster.enabled (and .Values.cache.ssd.enabled .Values.cache.ssd.encrypt) -}}true{{- end -}}
{{- end -}}

{{- define "streamedge.podEnv" -}}
- name: POD_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
- name: POD_NAMESPACE
  valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
- name: POD_IP
  valueFrom: {fieldRef: {fieldPath: status.podIP}}
- name: PEER_SERVICE
  value: {{ include "streamedge.peerService" . }}
{{- end -}}

{{- define "streamedge.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "streamedge.configMounts" -}}
- {name: template, mountPath: /etc/streamedge/template, readOnly: true}
- {name: conf-d, mountPath: /etc/streamedge/conf.d, readOnly: true}
{{- if include "streamedge.needsKeys" . }}
- {name: keys, mountPath: /etc/streamedge/keys, readOnly: true}
{{- end }}
{{- if .Values.tls.enabled }}
- {name: tls, mountPath: /etc/streamedge/tls, readOnly: true}
{{- end }}
- {name: run, mountPath: /run/streamedge}
{{- end -}}
