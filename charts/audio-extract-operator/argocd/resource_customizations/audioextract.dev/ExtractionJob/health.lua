-- Argo CD health of an audio-extract ExtractionJob (audioextract.dev/v1alpha1).
-- Progressing: not yet observed (no status, or status.observedGeneration behind
--   metadata.generation), Queued or Running.
-- Healthy: Succeeded.  Degraded: Failed (the message names the error code).
-- An ExtractionJob has no suspend of its own: behind a suspended Batch or a Kueue queue
-- it stays Queued (Progressing), and its Batch shows Suspended.
local hs = {}

local function condition(status, type)
  if status.conditions ~= nil then
    for _, c in ipairs(status.conditions) do
      if c.type == type then
        return c
      end
    end
  end
  return nil
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe the ExtractionJob"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local phase = status.phase
if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = "Succeeded"
  if status.result ~= nil and status.result.uri ~= nil then
    hs.message = "Succeeded: " .. status.result.uri
  end
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = "Failed"
  if status.error ~= nil and status.error.code ~= nil then
    hs.message = "Failed: " .. status.error.code
    if status.error.message ~= nil and status.error.message ~= "" then
      hs.message = hs.message .. ": " .. status.error.message
    end
  end
elseif phase == "Queued" or phase == "Running" then
  hs.status = "Progressing"
  hs.message = phase
  local ready = condition(status, "Ready")
  if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
    hs.message = phase .. ": " .. ready.message
  end
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
return hs
