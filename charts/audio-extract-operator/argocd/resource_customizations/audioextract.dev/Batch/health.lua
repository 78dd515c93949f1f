-- Argo CD health of an audio-extract Batch (audioextract.dev/v1alpha1).
-- Progressing: not yet observed (no status, or status.observedGeneration behind
--   metadata.generation), Queued or Running.
-- Healthy: Succeeded.
-- Degraded: Failed, and PartiallySucceeded (some jobs failed: their outputs are
--   missing until a retry-failed annotation re-runs them; the operator reports it as
--   Stalled=True, Ready=False, which kstatus also reads as not healthy).
-- Suspended: spec.suspend is set and the Batch is not finished.
local hs = {}

local function condition_message(status, type)
  if status.conditions ~= nil then
    for _, c in ipairs(status.conditions) do
      if c.type == type and c.message ~= nil and c.message ~= "" then
        return c.message
      end
    end
  end
  return nil
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe the Batch"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local detail = condition_message(status, "Ready")
local function with_detail(phase)
  if detail ~= nil then
    return phase .. ": " .. detail
  end
  return phase
end

local phase = status.phase
if phase == "Succeeded" then
  hs.status = "Healthy"
elseif phase == "Failed" or phase == "PartiallySucceeded" then
  hs.status = "Degraded"
elseif phase == "Suspended" then
  hs.status = "Suspended"
elseif phase == "Queued" or phase == "Running" then
  hs.status = "Progressing"
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
  return hs
end
hs.message = with_detail(phase)
return hs
